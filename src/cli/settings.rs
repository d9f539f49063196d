//! Settings resolved from arguments, environment and pipeline, the same way for every
//! command: the pipeline, the data directory (flag or `SPORTELLO_DATA`, then the pipeline's
//! `data_dir`, then `./sportello-data`), the store, the rules, who acts.

use super::*;

/// Who does it (recorded in the history): `--by`, else the login name.
pub(super) fn actor(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into())
}

pub(super) fn load_pipeline(path: Option<&Path>) -> Result<Pipeline> {
    let pipeline = match path {
        Some(p) => Pipeline::load(p).map_err(anyhow::Error::from)?,
        None => Pipeline::default(),
    };
    use_database(None, pipeline.database.as_ref())?;
    Ok(pipeline)
}

/// Settles which register this process and its children use: `--database` (or
/// `SPORTELLO_DATABASE`), else the pipeline's `database`, else SQLite. Recorded in the
/// environment, where every opening of the store reads it (see `store::Database`).
pub(super) fn use_database(flag: Option<&str>, pipeline: Option<&Database>) -> Result<()> {
    let chosen = match (flag, std::env::var(DATABASE_ENV).ok()) {
        (Some(f), _) => Some(f.to_string()),
        // Set already (by the environment or an earlier call): it wins over the pipeline.
        (None, Some(_)) => None,
        (None, None) => match pipeline {
            Some(Database::Postgres(url)) => Some(url.clone()),
            _ => None,
        },
    };
    if let Some(value) = chosen {
        Database::parse(&value).map_err(anyhow::Error::msg)?;
        // Start-up, before any thread of ours reads the environment.
        std::env::set_var(DATABASE_ENV, value);
    }
    Ok(())
}

pub(super) fn data_dir(cli_data: &Option<PathBuf>, pipeline: &Pipeline) -> PathBuf {
    cli_data
        .clone()
        .or_else(|| pipeline.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("sportello-data"))
}

pub(super) fn open_store(dir: &Path) -> Result<Store> {
    Store::open(dir).with_context(|| match Database::from_env() {
        Ok(Database::Postgres(url)) => format!(
            "cannot open the register at {} (originals in {})",
            crate::store::postgres::redacted(&url),
            dir.display()
        ),
        _ => format!("cannot open the store in {}", dir.display()),
    })
}

/// The rules file: given, else the pipeline's classify stage, else the shipped rules.
pub(super) fn rules_path(given: Option<&Path>, pipeline: &Pipeline) -> PathBuf {
    given.map_or_else(|| pipeline.rules_in_force(), Path::to_path_buf)
}
