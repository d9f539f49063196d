//! `sportello migrate --to postgres://…`: the SQLite store in the data dir copied into an
//! empty PostgreSQL register, then checked table by table (counts and digests) and original by
//! original (SHA-256).

use super::*;
use crate::store::migrate::migrate;
use crate::store::postgres::{redacted, PgStore};

#[derive(Args, Debug)]
pub struct MigrateArgs {
    /// The PostgreSQL register to fill: postgres://USER@HOST:PORT/DB (an empty database)
    #[arg(long)]
    to: String,
    /// Copy the originals to this data directory (e.g. a shared mount every machine reads);
    /// default: they stay in the data directory
    #[arg(long)]
    originals_to: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: MigrateArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let MigrateArgs {
        to,
        originals_to,
        json,
    } = args;
    let url = match Database::parse(&to).map_err(anyhow::Error::msg)? {
        Database::Postgres(url) => url,
        Database::Sqlite => bail!("--to names the PostgreSQL register to copy into"),
    };
    let dir = data_dir(cli_data, &Pipeline::default());
    if !dir.join("sportello.db").exists() {
        bail!("no SQLite store in {} to migrate", dir.display());
    }
    let from = crate::store::sqlite::Store::open(&dir)
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    let originals = originals_to.clone().unwrap_or_else(|| dir.clone());
    let mut target = PgStore::open(&url, &originals)
        .with_context(|| format!("cannot open the register at {}", redacted(&url)))?;
    let done = migrate(&from, &mut target, originals_to.as_deref())
        .with_context(|| format!("migrating {} to {}", dir.display(), redacted(&url)))?;
    if json {
        out.line(&serde_json::to_string(&done)?)?;
    } else {
        for (table, rows) in &done.tables {
            out.line(&format!("{table:<18} {rows:>8} rows, same in both"))?;
        }
        out.line(&format!(
            "{} originals checked against their SHA-256 ({} copied to {})",
            done.originals,
            done.originals_copied,
            originals.display()
        ))?;
        out.line(&format!(
            "now use it: SPORTELLO_DATABASE={} SPORTELLO_DATA={}",
            redacted(&url),
            originals.display()
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
