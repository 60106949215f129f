"""The Celery app, its task base class, and the task families it loads."""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from celery import Celery, Task, signals
from celery.exceptions import Ignore, Retry

from taskapp import preflight, sqs, workerstats
from taskapp.errors import PermanentError, RetryableError
from taskapp.sqs.heartbeat import RUN_TOKEN

__all__ = ["app", "TaskappTask", "FAMILY_PACKAGES"]

logger = logging.getLogger(__name__)

#: Packages whose ``tasks`` module registers a task family (missing ones are skipped).
FAMILY_PACKAGES = [
    "taskapp",
    "taskapp.email",
    "taskapp.images",
    "taskapp.cleanup",
    "taskapp.reports",
]

#: Seconds a running key's lease outlives the task's hard time limit (its cap).
LEASE_GRACE = 5
#: Seconds a finished run keeps trying to record its key done while the database is unreachable
#: (at most: it stops before the task's hard time limit).
COMPLETION_PATIENCE = 60


#: ``apply_async`` options that travel as message headers (producers that only know a task's
#: name pass them as ``headers={...}``).
HEADER_OPTIONS = ("idempotency_key", "entity", "entity_version")


if TYPE_CHECKING:
    from celery.app.task import Context

    class TaskappContext(Context):
        """A task request with taskapp's headers, which Celery copies onto it as attributes."""

        idempotency_key: str | None
        entity: str | None
        entity_version: int  # read only with entity; taskapp/sqs/shape.py refuses a non-int
        taskapp_claim: dict[str, Any]

    _TaskBase = Task[..., Any]
else:
    _TaskBase = Task  # celery's Task is generic only in the stubs


class TaskappTask(_TaskBase):
    """Base of every task: dead letters with reasons, exactly-once effect, ordering guard.

    Call options:

    - ``idempotency_key="order-42:receipt"``: the key two deliveries must share to count as one
      (default: the task id).
    - ``entity="customer:42", entity_version=17``: skip this update (state ``STALE``) if a newer
      version of the entity was already applied (taskapp/ordering.py).
    """

    Request = "taskapp.sqs.worker:Request"
    #: Celery's default strategy; with signing on, it checks the signed headers first.
    Strategy = "taskapp.sqs.signing:strategy"
    #: Run under an idempotency key (Celery's own ``celery.*`` tasks never do).
    idempotent = True

    if TYPE_CHECKING:

        @property
        def request(self) -> TaskappContext: ...

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: Any = None,
        producer: Any = None,
        link: Any = None,
        link_error: Any = None,
        shadow: Any = None,
        **options: Any,
    ) -> Any:
        headers = {name: options.pop(name) for name in HEADER_OPTIONS if name in options}
        if headers:
            options["headers"] = {**(options.get("headers") or {}), **headers}
        return super().apply_async(
            args, kwargs, task_id, producer, link, link_error, shadow, **options
        )

    @property
    def backend(self) -> Any:
        """Celery's result backend; on the application database, ``taskapp.results.Backend``,
        which the idempotency claim and completion write STARTED and SUCCESS through."""
        if self._backend is None:
            from taskapp import results

            self._backend = results.backend_for(self.app)
        return self._backend

    @backend.setter
    def backend(self, value: Any) -> None:
        self._backend = value

    @property
    def track_started(self) -> bool:
        """Whether Celery's tracer writes STARTED: not when the claim writes it (``__call__``)."""
        if self._track_started is not None:
            return self._track_started
        tracked = bool(self.app.conf.task_track_started)
        return tracked and not (self._claims(self.name) and self._combines())

    @track_started.setter
    def track_started(self, value: bool) -> None:
        self._track_started = value

    _track_started: bool | None = None
    _backend: Any = None  # Celery's own default

    def _claims(self, name: str) -> bool:
        return self.idempotent and not name.startswith("celery.")

    def _combines(self) -> bool:
        """Whether our result rows go in the idempotency record's transactions."""
        from taskapp.db import engine
        from taskapp.results import Backend

        backend = self.backend
        return isinstance(backend, Backend) and backend.combines and backend.engine is engine()

    def _is_stale(self, eng: Any) -> bool:
        """Whether this call carries an entity version older than the one already applied."""
        entity = getattr(self.request, "entity", None)
        if entity is None:
            return False
        from taskapp.ordering import advance

        version = int(self.request.entity_version)
        if advance(eng, str(entity), version, self.request.id or ""):
            return False
        logger.warning("skipping stale %s for %s version %s", self.name, entity, version)
        return True

    def resolve_idempotency_key(self, kwarg: Any = None) -> Any:
        """The key this delivery runs under: the header, else the keyword argument, else the id.

        The one resolver: the claim below and tasks that claim their own key (email.send) both
        use it. The ``idempotency_key`` header, set by ``apply_async(idempotency_key=...)``,
        wins over the ``idempotency_key`` keyword argument because it is chosen when the message
        is published, while the argument is part of the signature: a signature published twice
        under two keys must run twice, as ``apply_async`` options override a signature's own.
        The value is the caller's, unchecked; whoever stores it validates it.
        """
        return getattr(self.request, "idempotency_key", None) or kwarg or self.request.id

    def idempotency_key(self, kwargs: dict[str, Any]) -> str:
        """``<task name>:<key>``: the key claimed for this delivery (see the resolver above)."""
        from taskapp.idempotency import key_for

        return key_for(self.name, self.resolve_idempotency_key(kwargs.get("idempotency_key")))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.request.called_directly or not self._claims(self.name):
            return super().__call__(*args, **kwargs)
        from celery.app.task import get_actual_ignore_result  # type: ignore[attr-defined]

        from taskapp import idempotency
        from taskapp.db import engine

        began = time.monotonic()
        key, eng, attempt = self.idempotency_key(kwargs), engine(), self.request.retries or 0
        # One transaction for the claim and STARTED, one for the completion and SUCCESS
        # (taskapp/results.py), when this request's result is stored on our database.
        store = None
        if not get_actual_ignore_result(self, self.request) and self._combines():
            store = self.backend
        started = (
            store.started(self.request) if store and self.app.conf.task_track_started else None
        )
        claim = idempotency.claim(
            eng, key, self.name, self.claim_lease(), self.run_token, attempt, also=started
        )
        if claim.done:
            logger.info("duplicate delivery of %s, returning the stored result", key)
            return claim.result
        if claim.superseded:
            # Its result stands as the later attempt leaves it: store nothing, ack the message.
            logger.info("duplicate of %s attempt %d (retried since): dropped", key, attempt)
            raise Ignore()
        if not claim.acquired:
            self._come_back_later(args, kwargs, claim.wait_seconds)
        # A dict, not the key: Celery copies the request into an inner context for run(), and
        # retry() there must mark the claim released for this frame too.
        self.request.taskapp_claim = {"key": key, "owner": claim.owner}
        if self._is_stale(eng):
            stale = {
                "stale": True,
                "entity": self.request.entity,
                "version": self.request.entity_version,
            }
            idempotency.complete(eng, key, stale, claim.owner)
            self.update_state(state="STALE", meta=stale)
            raise Ignore()
        try:
            result = super().__call__(*args, **kwargs)
        except BaseException:
            self._release_claim()
            raise
        # The tracer stores SUCCESS after it sent callbacks, so that their ids are its children.
        succeeded = None
        if store is not None and not self.request.callbacks and not self.request.chain:
            succeeded = store.succeeded(self.request, result)
        if not self._record_done(eng, key, result, claim.owner, succeeded, began):
            # Our lease ran out mid-run and another delivery took the key over: it runs too.
            logger.warning(
                "%s outlived its idempotency lease; key=%s was taken over", self.name, key
            )
        return result

    def _record_done(
        self, eng: Any, key: str, result: Any, owner: str | None, also: Any, began: float
    ) -> bool:
        """Record the key done, patiently while the database is unreachable (the run stays
        active meanwhile, so the heartbeat keeps its message invisible): for
        ``COMPLETION_PATIENCE`` seconds at most, and never into the task's time limit (the soft
        one would interrupt the wait, the hard one kill the process mid-write)."""
        from taskapp import idempotency

        conf = self.app.conf
        limit = float(
            self.soft_time_limit
            or conf.task_soft_time_limit
            or self.time_limit
            or conf.task_time_limit
            or 300
        )
        left = began + limit - min(LEASE_GRACE, limit / 5) - time.monotonic()
        patience = max(0.0, min(COMPLETION_PATIENCE, left))
        return idempotency.complete_patiently(eng, key, result, owner, also, patience)

    @property
    def run_token(self) -> str | None:
        """This run's token in a worker (claims held under it are renewed while it runs)."""
        return getattr(self.request, RUN_TOKEN, None)

    def claim_lease(self, cap: float | None = None) -> float:
        """Seconds a claim of this run holds unless renewed: ``cap`` (default: the hard time
        limit + grace) at most, and in a worker three heartbeat intervals, renewed by the
        worker's heartbeat while the run is active, so a crashed run's claim is free when its
        message comes back."""
        if cap is None:
            cap = (self.time_limit or self.app.conf.task_time_limit or 300) + LEASE_GRACE
        if self.run_token is None:
            return cap
        interval = self.app.conf.broker_transport_options.get("heartbeat_interval", 10)
        return min(cap, 3 * float(interval))

    def _release_claim(self, next_attempt: int | None = None) -> str | None:
        """Give up this execution's idempotency claim, once; return its key if it held one."""
        holder = getattr(self.request, "taskapp_claim", None) or {}
        key: str | None = holder.pop("key", None)
        if key is not None:
            from taskapp import idempotency
            from taskapp.db import engine

            idempotency.release(engine(), key, holder.pop("owner", None), next_attempt)
        return key

    def retry(self, *args: Any, **kwargs: Any) -> Any:
        # Hand the key on to the next attempt before Celery publishes the retry: its message may
        # be received (and claim the key) before this execution's exception has unwound.
        attempt = self.request.retries or 0
        key = self._release_claim(next_attempt=attempt + 1)
        try:
            return super().retry(*args, **kwargs)
        except Retry:
            raise
        except BaseException:
            # No retry was sent (retries exhausted, or the publish failed): this attempt's
            # message may be delivered again (a redrive, a redelivery) and must be able to run.
            if key is not None:
                from taskapp import idempotency
                from taskapp.db import engine

                idempotency.reopen(engine(), key, attempt)
            raise

    def _come_back_later(self, args: Any, kwargs: Any, wait: float) -> None:
        """Another delivery holds a live lease: re-publish this message for when it runs out.

        Not a Celery retry: waiting for a twin must not use up the task's own retries.
        """
        countdown = max(1, math.ceil(wait))
        workerstats.count_wait()  # shared memory, published by the heartbeat (no I/O here)
        self.signature_from_request(self.request, args, kwargs, countdown=countdown).apply_async()
        raise Ignore()


app = Celery("taskapp", task_cls=TaskappTask)
app.config_from_object("config.celery")
app.autodiscover_tasks(FAMILY_PACKAGES)
# Worker and beat refuse an unmigrated database or missing queues (taskapp/preflight.py).
preflight.connect()


def _renew_claims(tokens: set[str], lease_seconds: float, **_: Any) -> None:
    """Each visibility heartbeat extends the idempotency claims of the runs the worker still has
    (one statement for all); a dead run is left out and its claim expires."""
    if not tokens:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from taskapp import idempotency
    from taskapp.db import engine

    try:
        idempotency.renew(engine(), tokens, lease_seconds)
    except SQLAlchemyError as exc:  # the next tick tries again; the claims outlive two misses
        logger.warning("could not renew %d idempotency claims: %r", len(tokens), exc)


#: This worker's heartbeat counts not yet in ``worker_stats`` (main process only).
_tally = workerstats.Tally()


def _publish_worker_stats(worker: str = "", renewed: int = 0, failed: int = 0, **_: Any) -> None:
    """Each heartbeat adds its renewals and failures, and the idempotency waits since the last
    publish, to this worker's ``worker_stats`` row for ``taskapp metrics`` (one statement, and
    none when nothing changed)."""
    if not worker:
        return
    from sqlalchemy.exc import SQLAlchemyError

    from taskapp.db import engine

    try:
        _tally.tick(engine(), worker, renewed, failed)
    except SQLAlchemyError as exc:  # kept and added at the next tick
        logger.warning("could not publish the worker's heartbeat counters: %r", exc)


def _release_lost_claims(tokens: set[str], **_: Any) -> None:
    """A pool child died mid-run: free its claims now, before Celery requeues its message."""
    from sqlalchemy.exc import SQLAlchemyError

    from taskapp import idempotency
    from taskapp.db import engine

    try:
        idempotency.release_runs(engine(), tokens)
    except SQLAlchemyError as exc:  # the claims expire with their short lease anyway
        logger.warning("could not release %d lost idempotency claims: %r", len(tokens), exc)


def _already_done(task: str, key: str) -> bool:
    """Whether the idempotency record of ``task`` under ``key`` completed (a claim-checked
    duplicate whose S3 object is gone is then acknowledged, not dead-lettered)."""
    from sqlalchemy.exc import SQLAlchemyError

    from taskapp.db import engine
    from taskapp.idempotency import is_done, key_for

    full = key_for(task, key)
    try:
        return is_done(engine(), full)
    except SQLAlchemyError as exc:
        logger.warning("could not read idempotency key=%s: %r", full, exc)
        return False


def _database_unreachable() -> tuple[type[BaseException], ...]:
    """What our database raises when it cannot be reached (SQLAlchemy wraps the driver's)."""
    from taskapp.idempotency import UNREACHABLE

    return UNREACHABLE


@signals.worker_init.connect
def _validate_queue_plan(**_: object) -> None:
    """Refuse to start a worker whose visibility timeout is shorter than a hard time limit;
    tell the ack batcher each queue's visibility timeout."""
    import sys

    from config.settings import SettingError, load_settings
    from taskapp.queues import app_specs, effective_specs

    try:
        specs = effective_specs(app_specs(app), load_settings())
    except SettingError as exc:
        # Celery logs and swallows exceptions raised by signal handlers; exit instead.
        print(f"taskapp: configuration error: {exc}", file=sys.stderr)  # noqa: T201 - one line
        raise SystemExit(2) from exc
    # How long an acked message whose delete failed may still be deleted (taskapp/sqs/acks.py).
    # The worker's connections are made after worker_init and copy these options.
    app.conf.broker_transport_options["visibility_timeouts"] = {
        spec.name: spec.visibility_timeout for spec in specs
    }


# The SQS layer (taskapp/sqs/extension.py), told what is ours: the errors the worker sorts
# dead letters by, our database's outages, our idempotency records, the heartbeat's receivers.
sqs.install(
    app,
    permanent=(PermanentError,),
    retryable=(RetryableError,),
    unavailable=_database_unreachable(),
    already_done=_already_done,
    on_runs_renewed=(_renew_claims, _publish_worker_stats),
    on_runs_lost=(_release_lost_claims,),
)
