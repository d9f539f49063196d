//! `sportello migrate --to postgres://…`: an SQLite store copied into an empty PostgreSQL
//! register, row for row with the same ids (links, events and the outbox keep pointing at
//! their tickets), protocol counters and the labelled history included; the search index
//! rebuilt from the copied tickets; then every table compared by count and by a digest of
//! its rows on both sides, and every original's bytes checked against its SHA-256 (copied
//! first when the originals move to another folder, e.g. a shared mount).

use super::postgres::PgStore;
use super::*;
use ::postgres::types::{ToSql, Type};
use sha2::{Digest, Sha256};

/// What was copied and checked.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Migrated {
    /// Rows per table, equal on both sides.
    pub tables: Vec<(String, u64)>,
    /// Originals checked (and copied, when they moved).
    pub originals: u64,
    pub originals_copied: u64,
}

/// Tables in the order their rows can be inserted (referenced tables first). The search
/// index is not copied: it is rebuilt.
const TABLES: &[&str] = &[
    "tickets",
    "documents",
    "events",
    "protocol_counters",
    "counters",
    "intakes",
    "entities",
    "manual_links",
    "message_ids",
    "outbox",
    "users",
    "sessions",
    "parse_crashes",
    "labelled_history",
    "login_failures",
    "api_tokens",
    "request_windows",
    "jobs",
];

/// One SQLite value as the PostgreSQL column of type `ty` takes it.
fn converted(
    v: rusqlite::types::Value,
    ty: &Type,
    table: &str,
    column: &str,
) -> Result<Box<dyn ToSql + Sync>> {
    use rusqlite::types::Value as V;
    let bad = |v: &V| {
        StoreError::Corrupt(format!(
            "{table}.{column}: {v:?} does not fit PostgreSQL's {ty}"
        ))
    };
    Ok(match (v, ty) {
        (V::Null, t) if *t == Type::BOOL => Box::new(None::<bool>),
        (V::Null, t) if *t == Type::INT8 => Box::new(None::<i64>),
        (V::Null, t) if *t == Type::FLOAT8 => Box::new(None::<f64>),
        (V::Null, _) => Box::new(None::<String>),
        (V::Integer(i), t) if *t == Type::BOOL => Box::new(i != 0),
        (V::Integer(i), t) if *t == Type::INT8 => Box::new(i),
        (V::Integer(i), t) if *t == Type::FLOAT8 => Box::new(i as f64),
        (V::Real(f), t) if *t == Type::FLOAT8 => Box::new(f),
        (V::Text(s), t) if *t == Type::TEXT => Box::new(s),
        (V::Integer(i), t) if *t == Type::TEXT => Box::new(i.to_string()),
        (v, _) => return Err(bad(&v)),
    })
}

/// A canonical text of one value, the same from either side (booleans as 0/1, numbers as
/// Rust prints them).
fn canonical_sqlite(v: &rusqlite::types::Value) -> String {
    use rusqlite::types::Value as V;
    match v {
        V::Null => "∅".into(),
        V::Integer(i) => i.to_string(),
        V::Real(f) => format!("{f:?}"),
        V::Text(s) => s.clone(),
        V::Blob(b) => hex::encode(b),
    }
}

fn canonical_pg(r: &::postgres::Row, i: usize) -> Result<String> {
    let ty = r.columns()[i].type_().clone();
    Ok(if ty == Type::BOOL {
        r.try_get::<_, Option<bool>>(i)?
            .map_or("∅".into(), |b| (b as i64).to_string())
    } else if ty == Type::INT8 {
        r.try_get::<_, Option<i64>>(i)?
            .map_or("∅".into(), |n| n.to_string())
    } else if ty == Type::FLOAT8 {
        r.try_get::<_, Option<f64>>(i)?
            .map_or("∅".into(), |f| format!("{f:?}"))
    } else {
        r.try_get::<_, Option<String>>(i)?
            .unwrap_or_else(|| "∅".into())
    })
}

/// The columns a table has on both sides (PostgreSQL's extra columns, such as the labelled
/// history's fingerprint, are filled by the copy), with PostgreSQL's types.
fn shared_columns(
    sqlite: &rusqlite::Connection,
    pg: &mut impl ::postgres::GenericClient,
    table: &str,
) -> Result<Vec<(String, Type)>> {
    let stmt = sqlite.prepare(&format!("SELECT * FROM {table} LIMIT 0"))?;
    let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let pg_stmt = pg.prepare(&format!("SELECT * FROM {table} LIMIT 0"))?;
    Ok(pg_stmt
        .columns()
        .iter()
        .filter(|c| names.iter().any(|n| n == c.name()))
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect())
}

/// SHA-256 over a table's shared columns, rows in key order, on the SQLite side.
fn digest_sqlite(
    sqlite: &rusqlite::Connection,
    table: &str,
    columns: &[(String, Type)],
    order: &str,
) -> Result<(u64, String)> {
    let list: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let mut stmt = sqlite.prepare(&format!(
        "SELECT {} FROM {table} ORDER BY {order}",
        list.join(", ")
    ))?;
    let mut rows = stmt.query([])?;
    let (mut n, mut h) = (0u64, Sha256::new());
    while let Some(r) = rows.next()? {
        for i in 0..list.len() {
            let v: rusqlite::types::Value = r.get(i)?;
            h.update(canonical_sqlite(&v).as_bytes());
            h.update([0x1f]);
        }
        h.update([0x1e]);
        n += 1;
    }
    Ok((n, hex::encode(h.finalize())))
}

fn digest_pg(
    pg: &mut ::postgres::Client,
    table: &str,
    columns: &[(String, Type)],
    order: &str,
) -> Result<(u64, String)> {
    let list: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let rows = pg.query(
        &format!("SELECT {} FROM {table} ORDER BY {order}", list.join(", ")),
        &[],
    )?;
    let mut h = Sha256::new();
    for r in &rows {
        for i in 0..list.len() {
            h.update(canonical_pg(r, i)?.as_bytes());
            h.update([0x1f]);
        }
        h.update([0x1e]);
    }
    Ok((rows.len() as u64, hex::encode(h.finalize())))
}

/// A total order of a table's rows the same on both sides.
fn order_of(table: &str) -> &'static str {
    match table {
        "protocol_counters" => "year",
        "counters" => "name",
        "manual_links" => "a, b",
        "message_ids" => "message_id",
        "sessions" => "token_sha256",
        "parse_crashes" => "sha256",
        "login_failures" | "request_windows" => "subject",
        _ => "id",
    }
}

/// Copies `from` (SQLite) into `to` (an empty PostgreSQL register) and checks the copy.
/// `originals_to`: a folder the originals move to (checked there); None: they stay where they
/// are, and `to` reads them from the same data dir.
pub fn migrate(
    from: &sqlite::Store,
    to: &mut PgStore,
    originals_to: Option<&Path>,
) -> Result<Migrated> {
    let sqlite = from.connection();
    let mut out = Migrated::default();
    {
        let mut pg = to.connection()?;
        let r = pg.query_one("SELECT COUNT(*) FROM tickets", &[])?;
        if r.try_get::<_, i64>(0)? > 0 {
            return Err(StoreError::Conflict(
                "the PostgreSQL register has tickets already: migrate into an empty database"
                    .into(),
            ));
        }
        let mut tx = pg.transaction()?;
        for &table in TABLES {
            let columns = shared_columns(sqlite, &mut tx, table)?;
            let fingerprint = table == "labelled_history";
            let mut names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
            if fingerprint {
                names.push("fingerprint".into());
            }
            let marks: Vec<String> = (1..=names.len()).map(|i| format!("${i}")).collect();
            let identity = columns.iter().any(|(c, _)| c == "id") && table != "message_ids";
            let insert = tx.prepare(&format!(
                "INSERT INTO {table} ({}) {} VALUES ({})",
                names.join(", "),
                if identity {
                    "OVERRIDING SYSTEM VALUE"
                } else {
                    ""
                },
                marks.join(", ")
            ))?;
            let list: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            let order = if table == "message_ids" {
                "rowid"
            } else {
                order_of(table)
            };
            let mut stmt = sqlite.prepare(&format!(
                "SELECT {} FROM {table} ORDER BY {order}",
                list.join(", ")
            ))?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(names.len());
                let mut texts = Vec::new();
                for (i, (column, ty)) in columns.iter().enumerate() {
                    let v: rusqlite::types::Value = r.get(i)?;
                    if fingerprint && ["record_id", "subject", "body"].contains(&column.as_str()) {
                        texts.push(canonical_sqlite(&v));
                    }
                    values.push(converted(v, ty, table, column)?);
                }
                if fingerprint {
                    values.push(Box::new(postgres::labelled_fingerprint(
                        &texts[0], &texts[1], &texts[2],
                    )));
                }
                let params: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
                tx.execute(&insert, &params)?;
            }
            if identity {
                // New rows continue after the copied ones.
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                                COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
                    ),
                    &[],
                )?;
            }
        }
        let ids: Vec<i64> = tx
            .query("SELECT id FROM tickets ORDER BY id", &[])?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<std::result::Result<_, _>>()?;
        for id in ids {
            postgres::reindex(&mut tx, id)?;
        }
        tx.commit()?;
        // The copy's statistics now, not when autovacuum gets to them: the first searches'
        // plans depend on the words' frequencies.
        pg.batch_execute("ANALYZE")?;
        for &table in TABLES {
            let columns = shared_columns(sqlite, &mut *pg, table)?;
            let order = order_of(table);
            let (n_from, d_from) = digest_sqlite(sqlite, table, &columns, order)?;
            let (n_to, d_to) = digest_pg(&mut pg, table, &columns, order)?;
            if (n_from, &d_from) != (n_to, &d_to) {
                return Err(StoreError::Corrupt(format!(
                    "{table}: {n_from} rows (digest {d_from}) in SQLite, {n_to} (digest {d_to}) in PostgreSQL"
                )));
            }
            out.tables.push((table.to_string(), n_to));
        }
    }
    let shas: Vec<String> = {
        let mut stmt = sqlite.prepare(
            "SELECT DISTINCT sha256 FROM documents UNION SELECT DISTINCT sha256 FROM jobs ORDER BY 1",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let target = originals_to.map(BlobStore::new);
    for sha in shas {
        let src = from.blobs().path_of(&sha);
        let Ok(bytes) = std::fs::read(&src) else {
            // A registration whose original never reached the store (recorded as such on
            // its ticket) has nothing to copy.
            continue;
        };
        if hex::encode(Sha256::digest(&bytes)) != sha {
            return Err(StoreError::Corrupt(format!(
                "the original {} does not match its SHA-256",
                src.display()
            )));
        }
        if let Some(t) = &target {
            let dst = t.path_of(&sha);
            if std::fs::read(&dst)
                .ok()
                .map(|b| hex::encode(Sha256::digest(b)))
                != Some(sha.clone())
            {
                t.put(&bytes).map_err(|source| StoreError::Io {
                    context: format!("cannot copy the original {}", src.display()),
                    source,
                })?;
                out.originals_copied += 1;
            }
            let copied = std::fs::read(&dst).map_err(|source| StoreError::Io {
                context: format!("cannot read the copied original {}", dst.display()),
                source,
            })?;
            if hex::encode(Sha256::digest(copied)) != sha {
                return Err(StoreError::Corrupt(format!(
                    "the copy {} does not match its SHA-256",
                    dst.display()
                )));
            }
        }
        out.originals += 1;
    }
    Ok(out)
}
