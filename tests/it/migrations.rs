//! The two migration sets (`migrations/sqlite/`, `migrations/postgres/`)
//! describe one schema: the same files, the same SQL apart from comments
//! where the dialects allow it, and the same tables, columns and indexes once
//! applied. Applied migrations are checksummed by sqlx and can never be
//! edited, so a backend that drifts stays drifted: these tests catch it in
//! the change that introduces it. Both read the folders at test time, so
//! migrations added later are covered without touching this file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use jitbot::store::{Db, Pool};

use crate::support::{Backend, TestDatabase, postgres_server};

/// The migration pairs whose SQL may differ, each with the dialect reason.
/// Keep it short and true: a pair listed here that has become equal fails
/// the test, and so does a name that is not a migration.
const DIALECT_DIFFERENCES: &[(&str, &str)] = &[
    (
        "0001_core.sql",
        "keys: PostgreSQL has BIGINT GENERATED ALWAYS AS IDENTITY, SQLite INTEGER PRIMARY KEY AUTOINCREMENT; \
     append-only audit_events: PostgreSQL raises from a PL/pgSQL trigger function run by one \
     BEFORE UPDATE OR DELETE ... FOR EACH ROW trigger, SQLite has two CREATE TRIGGER ... \
     BEGIN SELECT RAISE(ABORT, ...); END",
    ),
    (
        "0013_keyed_audit.sql",
        "TRUNCATE exists only on PostgreSQL (BEFORE TRUNCATE ... FOR EACH STATEMENT triggers); the forward-only \
         audit_head check is a PL/pgSQL trigger function on PostgreSQL and CREATE TRIGGER ... WHEN ... BEGIN \
         SELECT RAISE(ABORT, ...); END on SQLite",
    ),
];

fn migrations_dir(backend: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(backend)
}

/// The `.sql` files of a folder (the ones sqlx applies), by file name.
fn sql_files(dir: &Path) -> BTreeMap<String, String> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (name, text)
        })
        .collect()
}

/// The SQL without `--` and `/* */` comments, with whitespace collapsed to
/// one space and dropped next to `(`, `)`, `,` and `;`, so that layout and
/// column alignment do not count. Quoted strings and identifiers are kept
/// verbatim (comment markers and spaces in them are text).
fn normalised_sql(sql: &str) -> String {
    const TIGHT: &[char] = &['(', ')', ',', ';'];
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut space = false;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '-' if chars.peek() == Some(&'-') => {
                chars.by_ref().find(|&c| c == '\n');
                space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut previous = ' ';
                chars.by_ref().find(|&c| std::mem::replace(&mut previous, c) == '*' && c == '/');
                space = true;
            }
            c if c.is_whitespace() => space = true,
            c => {
                let after_tight = out.ends_with(TIGHT);
                if space && !out.is_empty() && !after_tight && !TIGHT.contains(&c) {
                    out.push(' ');
                }
                space = false;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                }
                out.push(c);
            }
        }
    }
    out
}

/// Everything wrong with the two folders, one line each: a file in one
/// folder only, a pair that differs without a listed reason, a listed pair
/// that no longer differs or does not exist.
fn migration_pair_problems(sqlite_dir: &Path, postgres_dir: &Path, exceptions: &[(&str, &str)]) -> Vec<String> {
    let sqlite = sql_files(sqlite_dir);
    let postgres = sql_files(postgres_dir);
    let mut problems = Vec::new();
    for name in sqlite.keys().filter(|name| !postgres.contains_key(*name)) {
        problems.push(format!("{name} is in migrations/sqlite only: add its PostgreSQL twin"));
    }
    for name in postgres.keys().filter(|name| !sqlite.contains_key(*name)) {
        problems.push(format!("{name} is in migrations/postgres only: add its SQLite twin"));
    }
    let listed: BTreeMap<&str, &str> = exceptions.iter().copied().collect();
    for (name, sqlite_sql) in &sqlite {
        let Some(postgres_sql) = postgres.get(name) else { continue };
        let equal = normalised_sql(sqlite_sql) == normalised_sql(postgres_sql);
        match (equal, listed.contains_key(name.as_str())) {
            (false, false) => problems.push(format!(
                "{name} differs between SQLite and PostgreSQL (beyond comments and whitespace): make the SQL \
                 the same, or list the pair with its dialect reason"
            )),
            (true, true) => problems.push(format!(
                "{name} is listed as a dialect difference but both files are now equal: drop it from the list"
            )),
            _ => {}
        }
    }
    for name in listed.keys().filter(|name| !sqlite.contains_key(**name) || !postgres.contains_key(**name)) {
        problems.push(format!("{name} is listed as a dialect difference but is not a migration of both backends"));
    }
    problems
}

#[test]
fn every_migration_pair_is_the_same_sql_apart_from_comments_or_has_a_dialect_reason() {
    let problems = migration_pair_problems(&migrations_dir("sqlite"), &migrations_dir("postgres"), DIALECT_DIFFERENCES);
    assert!(problems.is_empty(), "the SQLite and PostgreSQL migrations disagree:\n  {}", problems.join("\n  "));
}

#[test]
fn the_pair_check_names_a_one_sided_migration_a_silent_difference_and_a_stale_exception() {
    assert_eq!(
        normalised_sql("CREATE TABLE a (\n    x  BIGINT, -- why\n    y TEXT /* note */\n) ;\nSELECT '--  x';"),
        "CREATE TABLE a(x BIGINT,y TEXT);SELECT '--  x';"
    );
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, postgres) = (dir.path().join("sqlite"), dir.path().join("postgres"));
    std::fs::create_dir_all(&sqlite).unwrap();
    std::fs::create_dir_all(&postgres).unwrap();
    let write = |dir: &Path, name: &str, sql: &str| std::fs::write(dir.join(name), sql).unwrap();
    // Equal apart from comments and layout: no problem.
    write(&sqlite, "0001_a.sql", "-- SQLite\nCREATE TABLE a (\n    x  BIGINT, -- why\n    y TEXT\n);\n");
    write(&postgres, "0001_a.sql", "/* PostgreSQL */ CREATE TABLE a (x BIGINT,\ny TEXT);");
    // A `--` inside a string is SQL, not a comment.
    write(&sqlite, "0002_b.sql", "INSERT INTO a (y) VALUES ('--x');");
    write(&postgres, "0002_b.sql", "INSERT INTO a (y) VALUES ('--y');");
    write(&sqlite, "0003_c.sql", "ALTER TABLE a ADD COLUMN z TEXT;");
    write(&sqlite, "0004_d.sql", "CREATE INDEX a_by_x ON a (x);");
    write(&postgres, "0004_d.sql", "CREATE INDEX a_by_x ON a (x);");
    write(&sqlite, "README.md", "not a migration");

    let problems = migration_pair_problems(&sqlite, &postgres, &[("0004_d.sql", "stale"), ("0009_x.sql", "gone")]);
    let expected = [
        "0003_c.sql is in migrations/sqlite only",
        "0002_b.sql differs between SQLite and PostgreSQL",
        "0004_d.sql is listed as a dialect difference but both files are now equal",
        "0009_x.sql is listed as a dialect difference but is not a migration of both backends",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for start in expected {
        assert!(problems.iter().any(|p| p.starts_with(start)), "no problem starts with {start:?}: {problems:#?}");
    }

    // The other direction, and a listed difference that still differs.
    std::fs::remove_file(sqlite.join("0003_c.sql")).unwrap();
    write(&postgres, "0005_e.sql", "SELECT 1;");
    let problems = migration_pair_problems(&sqlite, &postgres, &[("0002_b.sql", "a real dialect reason")]);
    assert_eq!(problems, ["0005_e.sql is in migrations/postgres only: add its SQLite twin"]);
}

/// What a migrated database holds, as far as the code can tell the backends
/// apart: per table, each column's coarse type class, and the indexes
/// created by name (`CREATE INDEX`; those behind keys and UNIQUE constraints
/// are named by each backend its own way and left out).
#[derive(Debug, Default)]
struct Schema {
    columns: BTreeMap<String, BTreeMap<String, String>>,
    indexes: BTreeMap<String, BTreeSet<String>>,
}

/// The class of a SQLite declared type, by SQLite's own affinity rules
/// (<https://www.sqlite.org/datatype3.html#determination_of_column_affinity>),
/// with BOOL first since SQLite has no boolean affinity of its own.
fn sqlite_type_class(declared: &str) -> String {
    let t = declared.to_ascii_uppercase();
    let class = if t.contains("BOOL") {
        "boolean"
    } else if t.contains("INT") {
        "integer"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "text"
    } else if t.contains("BLOB") || t.is_empty() {
        "bytes"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "real"
    } else {
        return format!("other ({declared})");
    };
    class.to_owned()
}

/// The class of a PostgreSQL `information_schema.columns.data_type`.
fn postgres_type_class(data_type: &str) -> String {
    let class = match data_type {
        "smallint" | "integer" | "bigint" => "integer",
        "text" | "character varying" | "character" => "text",
        "boolean" => "boolean",
        "bytea" => "bytes",
        "real" | "double precision" | "numeric" => "real",
        other => return format!("other ({other})"),
    };
    class.to_owned()
}

/// `(table, column, type)` and `(table, index)` as the catalogues list them.
type ColumnRow = (String, String, String);
type IndexRow = (String, String);

async fn migrated_schema(backend: Backend, dir: &Path) -> Schema {
    let (_database, url) = TestDatabase::create(backend, dir).await;
    let db = Db::connect(&url, 2).await.unwrap();
    db.migrate().await.unwrap();
    let mut schema = Schema::default();
    let (columns, indexes): (Vec<ColumnRow>, Vec<IndexRow>) = match db.pool() {
        Pool::Sqlite(pool) => {
            let columns = sqlx::query_as::<_, ColumnRow>(
                "SELECT m.name, c.name, c.type FROM sqlite_master m JOIN pragma_table_info(m.name) c \
                 WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
                 AND m.name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            // Indexes behind keys and UNIQUE constraints have no SQL.
            let indexes = sqlx::query_as(
                "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
                 AND tbl_name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            (columns.into_iter().map(|(t, c, ty)| (t, c, sqlite_type_class(&ty))).collect(), indexes)
        }
        Pool::Postgres(pool) => {
            let columns = sqlx::query_as::<_, ColumnRow>(
                "SELECT table_name::text, column_name::text, data_type::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            let indexes = sqlx::query_as(
                "SELECT t.relname::text, i.relname::text FROM pg_index x \
                 JOIN pg_class i ON i.oid = x.indexrelid \
                 JOIN pg_class t ON t.oid = x.indrelid \
                 WHERE t.relnamespace = current_schema()::regnamespace \
                 AND t.relname <> '_sqlx_migrations' \
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c \
                                 WHERE c.conindid = x.indexrelid AND c.contype IN ('p', 'u', 'x'))",
            )
            .fetch_all(pool)
            .await
            .unwrap();
            (columns.into_iter().map(|(t, c, ty)| (t, c, postgres_type_class(&ty))).collect(), indexes)
        }
    };
    db.close().await;
    for (table, column, class) in columns {
        schema.columns.entry(table).or_default().insert(column, class);
    }
    for (table, index) in indexes {
        schema.indexes.entry(table).or_default().insert(index);
    }
    schema
}

/// Every difference between the two schemas, one line each.
fn schema_differences(sqlite: &Schema, postgres: &Schema) -> Vec<String> {
    let mut out = Vec::new();
    let tables: BTreeSet<&String> = sqlite.columns.keys().chain(postgres.columns.keys()).collect();
    for table in tables {
        let (Some(s), Some(p)) = (sqlite.columns.get(table), postgres.columns.get(table)) else {
            let side = if sqlite.columns.contains_key(table) { "SQLite" } else { "PostgreSQL" };
            out.push(format!("table {table} exists on {side} only"));
            continue;
        };
        let columns: BTreeSet<&String> = s.keys().chain(p.keys()).collect();
        for column in columns {
            match (s.get(column), p.get(column)) {
                (Some(a), Some(b)) if a != b => {
                    out.push(format!("{table}.{column} is {a} on SQLite but {b} on PostgreSQL"));
                }
                (Some(_), None) => out.push(format!("{table}.{column} exists on SQLite only")),
                (None, Some(_)) => out.push(format!("{table}.{column} exists on PostgreSQL only")),
                _ => {}
            }
        }
    }
    let empty = BTreeSet::new();
    let tables: BTreeSet<&String> = sqlite.indexes.keys().chain(postgres.indexes.keys()).collect();
    for table in tables {
        let s = sqlite.indexes.get(table).unwrap_or(&empty);
        let p = postgres.indexes.get(table).unwrap_or(&empty);
        for index in s.difference(p) {
            out.push(format!("index {index} on {table} exists on SQLite only"));
        }
        for index in p.difference(s) {
            out.push(format!("index {index} on {table} exists on PostgreSQL only"));
        }
    }
    out
}

#[tokio::test]
async fn both_backends_end_with_the_same_tables_columns_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = migrated_schema(Backend::Sqlite, dir.path()).await;
    for table in ["access_requests", "jobs", "audit_events", "kill_switch"] {
        assert!(sqlite.columns.contains_key(table), "the SQLite schema was read: no {table} in {sqlite:#?}");
    }
    assert!(
        sqlite.columns.values().flat_map(|columns| columns.values()).all(|class| !class.starts_with("other")),
        "a SQLite column type has no class here yet: {sqlite:#?}"
    );
    if postgres_server().is_none() {
        return;
    }
    let postgres = migrated_schema(Backend::Postgres, dir.path()).await;
    let differences = schema_differences(&sqlite, &postgres);
    let mut message = String::new();
    for difference in &differences {
        let _ = write!(message, "\n  {difference}");
    }
    assert!(differences.is_empty(), "the migrated SQLite and PostgreSQL schemas differ:{message}");
}

#[test]
fn the_schema_comparison_names_every_difference() {
    let schema = |columns: &[(&str, &str, &str)], indexes: &[(&str, &str)]| {
        let mut s = Schema::default();
        for (t, c, class) in columns {
            s.columns.entry(t.to_string()).or_default().insert(c.to_string(), class.to_string());
        }
        for (t, i) in indexes {
            s.indexes.entry(t.to_string()).or_default().insert(i.to_string());
        }
        s
    };
    let sqlite = schema(
        &[("a", "id", "integer"), ("a", "flag", "integer"), ("a", "note", "text"), ("b", "x", "text")],
        &[("a", "a_by_note")],
    );
    let postgres = schema(&[("a", "id", "integer"), ("a", "flag", "boolean"), ("c", "y", "bytes")], &[]);
    assert_eq!(
        schema_differences(&sqlite, &postgres),
        [
            "a.flag is integer on SQLite but boolean on PostgreSQL",
            "a.note exists on SQLite only",
            "table b exists on SQLite only",
            "table c exists on PostgreSQL only",
            "index a_by_note on a exists on SQLite only",
        ]
    );
    assert!(schema_differences(&sqlite, &sqlite).is_empty());
}
