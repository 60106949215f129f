"""The image_uploads table on SQLite and PostgreSQL: pending, done, failed, polled by key."""

from __future__ import annotations

from taskapp.images import records


def test_upload_status_moves_from_pending_to_done(database_url: str) -> None:
    # given nothing recorded for a key
    assert records.upload_status("uploads/a.jpg", database_url) is None
    # when it is submitted and then completed
    records.mark_pending("uploads/a.jpg", "result-1", database_url)
    pending = records.upload_status("uploads/a.jpg", database_url)
    records.mark_done("uploads/a.jpg", {"variants": [1]}, {"format": "JPEG"}, database_url)
    done = records.upload_status("uploads/a.jpg", database_url)
    # then the row shows each state, and the final one holds both results
    assert pending is not None
    assert pending["status"] == "pending"
    assert pending["result_id"] == "result-1"
    assert done is not None
    assert done["status"] == "done"
    assert done["manifest"] == {"variants": [1]}
    assert done["analysis"] == {"format": "JPEG"}
    assert done["created_at"] == pending["created_at"]


def test_failure_is_recorded_and_a_resubmission_resets_it(database_url: str) -> None:
    records.mark_pending("uploads/b.jpg", "r1", database_url)
    records.mark_failed("uploads/b.jpg", "NotAnImage: not an image", database_url)
    failed = records.upload_status("uploads/b.jpg", database_url)
    assert failed is not None
    assert (failed["status"], failed["error"]) == (
        "failed",
        "NotAnImage: not an image",
    )
    records.mark_pending("uploads/b.jpg", "r2", database_url)
    again = records.upload_status("uploads/b.jpg", database_url)
    assert again is not None
    assert (again["status"], again["error"]) == ("pending", None)
