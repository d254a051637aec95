"""Schema 5 moves the wide ``ratings`` table into narrow integer rows (``answers``) behind a
``ratings`` view: a schema-4 store's answers and assignments all come through unchanged."""

import pytest

from semcomp.errors import StoreError
from semcomp.store import MIGRATIONS, SCHEMA_VERSION, Store

OLD_ASSIGNMENT_COLUMNS = (
    "assignment_id, survey, hit_id, worker_id, status, accept_time, submit_time, work_seconds, "
    "approval_rate, source_file, source_line, import_id, created_at"
)
FIRST, SECOND = "/data/Batch_1_batch_results.csv", "/data/Batch_1_batch_results (1).csv"
T1, T2 = "2026-11-01T10:00:00.000+00:00", "2026-11-02T11:30:00.123+00:00"
ASSIGNMENTS = [
    # a re-import from a second file: the assignment names the file that wrote it last
    ("3A" + "x" * 62, "A", "H1", "W1", "Approved", "t0", "t1", 40.0, "99%", SECOND, 2, 2, T1),
    ("3B" + "y" * 62, "A", "H1", "W2", "Rejected", None, None, None, "", FIRST, 3, 1, T1),
    ("long:abc", "B", "long-format", "r1", "Approved", None, None, None, "", FIRST, 4, 1, T2),
]
RATINGS = [
    # assignment, item, question, survey, worker, item_id, original, candidate, is_check,
    # check_passed, value, text, raw, excluded, source_file, source_line, created_at
    (
        ASSIGNMENTS[0][0],
        "1",
        "similarity",
        "A",
        "W1",
        "i1",
        "o1",
        "c1",
        0,
        None,
        7.0,
        None,
        "7",
        None,
        SECOND,
        2,
        T1,
    ),
    # an answer the second file did not rewrite keeps its own file and line
    (
        ASSIGNMENTS[0][0],
        "2",
        "similarity",
        "A",
        "W1",
        "i2",
        "o1",
        "c2",
        0,
        None,
        3.5,
        None,
        "3.5",
        "duplicate",
        FIRST,
        5,
        T1,
    ),
    # an attention check (an image next to itself: no candidate), failed
    (
        ASSIGNMENTS[0][0],
        "3",
        "similarity",
        "A",
        "W1",
        "i3",
        "o2",
        None,
        1,
        0,
        1.0,
        None,
        "1",
        "attention_check",
        SECOND,
        2,
        T2,
    ),
    # the same pair as the first answer in another item, and without a survey item
    (
        ASSIGNMENTS[1][0],
        "1",
        "similarity",
        "A",
        "W2",
        "i9",
        "o1",
        "c1",
        0,
        None,
        9.0,
        None,
        "9",
        "rejected",
        FIRST,
        3,
        T1,
    ),
    (
        ASSIGNMENTS[1][0],
        "2",
        "similarity",
        "A",
        "W2",
        None,
        "o1",
        "c1",
        0,
        None,
        None,
        None,
        "",
        "rejected",
        FIRST,
        3,
        T1,
    ),
    # a text answer and a blank item slot (long format)
    (
        "long:abc",
        "",
        "objects",
        "B",
        "r1",
        None,
        "o3",
        "c3",
        0,
        None,
        None,
        "a dog, a tree",
        "a dog, a tree",
        None,
        FIRST,
        4,
        T2,
    ),
    (
        "long:abc",
        "",
        "color",
        "B",
        "r1",
        None,
        "o3",
        "c3",
        0,
        None,
        4.0,
        None,
        "4",
        None,
        FIRST,
        5,
        T2,
    ),
]
READ_RATINGS = "SELECT * FROM ratings ORDER BY assignment_id, item, question"
READ_ASSIGNMENTS = f"SELECT {OLD_ASSIGNMENT_COLUMNS} FROM assignments ORDER BY assignment_id"


def schema_4_store(root, ratings=RATINGS) -> tuple[list[tuple], list[tuple]]:
    """A store at schema 4 holding ``ratings`` (written the way the schema-4 importer wrote
    them); returns its rows as read (ratings, assignments)."""
    with Store(root, migrations=MIGRATIONS[:4]) as store:
        assert store.schema_version == 4
        conn = store.conn
        conn.execute("PRAGMA foreign_keys = OFF")  # no originals or candidates: rows only
        with store.transaction():
            conn.executemany(
                "INSERT INTO surveys (id, definition, created_at) VALUES (?, '{}', ?)",
                [("A", T1), ("B", T1)],
            )
            # the rows the answers name (their own references are not followed here)
            conn.executemany(
                "INSERT INTO rating_imports (id, survey, file, sha256, format, options, "
                "summary, imported_at) VALUES (?, 'A', ?, 'h', 'mturk', '{}', '{}', ?)",
                [(1, FIRST, T1), (2, SECOND, T2)],
            )
            conn.executemany(
                "INSERT INTO originals VALUES (?, ?, 'cat', ?, 4, 4, 16, 9, 'PNG', 'RGB', 1, "
                "'h', NULL, ?)",
                [(o, o, f"/photos/{o}.png", T1) for o in ("o1", "o2", "o3")],
            )
            conn.executemany(
                "INSERT INTO candidates (id, representation_id, replicate, artifact_hash, meta, "
                "created_at) VALUES (?, ?, 0, 'h', '{}', ?)",
                [(c, f"r-{c}", T1) for c in ("c1", "c2", "c3")],
            )
            conn.executemany(
                "INSERT INTO survey_items VALUES (?, 'A', 'b', 0, 0, 'o1', NULL, 'original', 0, ?)",
                [(i, T1) for i in ("i1", "i2", "i3", "i9")],
            )
            conn.executemany(
                f"INSERT INTO assignments ({OLD_ASSIGNMENT_COLUMNS}) "
                f"VALUES ({', '.join('?' * 13)})",
                ASSIGNMENTS,
            )
            conn.executemany(f"INSERT INTO ratings VALUES ({', '.join('?' * 17)})", ratings)
        return [tuple(r) for r in conn.execute(READ_RATINGS)], [
            tuple(r) for r in conn.execute(READ_ASSIGNMENTS)
        ]


def test_migration_5_keeps_every_rating_and_assignment(tmp_path):
    ratings, assignments = schema_4_store(tmp_path)
    assert len(ratings) == len(RATINGS) and len(assignments) == len(ASSIGNMENTS)
    with Store(tmp_path) as store:
        assert store.schema_version == SCHEMA_VERSION >= 5
        conn = store.conn
        assert [tuple(r) for r in conn.execute(READ_RATINGS)] == ratings
        assert [tuple(r) for r in conn.execute(READ_ASSIGNMENTS)] == assignments
        kinds = dict(conn.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'r%'"))
        assert kinds["ratings"] == "view" and store.count("answers") == len(RATINGS)
        # the narrow rows hold integers where the wide ones held ids, paths and times
        types = conn.execute(
            "SELECT DISTINCT typeof(assignment), typeof(question), typeof(subject), "
            "typeof(source_file), typeof(created_at) FROM answers"
        ).fetchall()
        assert [tuple(t) for t in types] == [("integer",) * 5]
        # two answers about one pair in different items are two subjects; the strings once
        assert store.count("rating_subjects") == 6
        assert store.count("rating_names") == 3 + 2 + 2  # questions, files, times
        parents = {r["table"] for r in conn.execute("PRAGMA foreign_key_list(answers)")}
        assert parents == {"assignments", "rating_subjects", "rating_names"}
        assert conn.execute("PRAGMA foreign_key_check(answers)").fetchall() == []
        # the assignments keep their order as ids; the next import numbers after them
        ids = [r[0] for r in conn.execute("SELECT id FROM assignments ORDER BY rowid")]
        assert ids == [1, 2, 3]


def test_migration_5_refuses_a_rating_it_would_lose(tmp_path):
    """A rating whose worker is not its assignment's cannot be a narrow row: the migration
    fails, says why, and leaves the store at schema 4 with its rows."""
    stray = (*RATINGS[0][:1], "9", *RATINGS[0][2:4], "W7", *RATINGS[0][5:])
    ratings, _ = schema_4_store(tmp_path, [*RATINGS, stray])
    with pytest.raises(StoreError, match="without their assignment's survey and worker"):
        Store(tmp_path)
    with Store(tmp_path, migrations=MIGRATIONS[:4]) as store:
        assert store.schema_version == 4
        assert [tuple(r) for r in store.conn.execute(READ_RATINGS)] == ratings
