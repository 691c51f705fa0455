import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from qwen_dataset.db.engine import make_engine, sqlite_url
from qwen_dataset.db.models import HumanAnnotation, ReviewState
from qwen_dataset.db.queries import final_annotations


def _add(engine, annotation_id, batch="b1", state=ReviewState.FINAL, payload='{"regions": []}'):
    with Session(engine) as session:
        session.add(
            HumanAnnotation(
                annotation_id=annotation_id,
                frame_id=f"f-{annotation_id}",
                upload_id="u",
                batch=batch,
                task="ocr",
                author="ann1",
                payload=payload,
                state=state,
            )
        )
        session.commit()


def _check_final_rows_and_concurrency(engine):
    _add(engine, "a1")
    _add(engine, "a2", state=ReviewState.DRAFT)
    _add(engine, "a3", batch="other")
    rows = final_annotations(engine, "b1")
    assert rows["annotation_id"].tolist() == ["a1"]
    assert rows["reviewed"].tolist() == [True]
    assert rows["source"].tolist() == ["human"]
    # Two sessions edit the same row: the second write with the stale version is refused.
    first, second = Session(engine), Session(engine)
    row_a, row_b = first.get(HumanAnnotation, "a1"), second.get(HumanAnnotation, "a1")
    row_a.payload = '{"regions": [1]}'
    first.commit()
    row_b.payload = '{"regions": [2]}'
    with pytest.raises(StaleDataError):
        second.commit()
    first.close()
    second.close()
    assert final_annotations(engine, "b1")["payload"].tolist() == ['{"regions": [1]}']


def test_sqlite(tmp_path):
    _check_final_rows_and_concurrency(make_engine(sqlite_url(tmp_path / "db" / "a.db")))


@pytest.mark.postgres
def test_postgres(postgres_url):
    engine = make_engine(postgres_url)
    try:
        _check_final_rows_and_concurrency(engine)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced(postgres_url, monkeypatch):
    # No ping per checkout any more: only a connection idle over PING_AFTER_IDLE_S is pinged, and
    # one the server closed meanwhile (a restart, an idle timeout) is replaced before anyone uses it.
    from qwen_dataset.db import engine as engine_module

    engine = make_engine(postgres_url, pool_size=1)
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            first_pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with engine.connect() as connection:  # used again at once: the same connection, not pinged
            assert connection.execute(text("SELECT pg_backend_pid()")).scalar_one() == first_pid
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": first_pid})
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)  # as if it had waited long
        with engine.connect() as connection:
            replacement = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        assert replacement != first_pid
    finally:
        admin.dispose()
        engine.dispose()
