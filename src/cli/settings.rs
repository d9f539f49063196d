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
    match path {
        Some(p) => Pipeline::load(p).map_err(anyhow::Error::from),
        None => Ok(Pipeline::default()),
    }
}

pub(super) fn data_dir(cli_data: &Option<PathBuf>, pipeline: &Pipeline) -> PathBuf {
    cli_data
        .clone()
        .or_else(|| pipeline.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("sportello-data"))
}

pub(super) fn open_store(dir: &Path) -> Result<Store> {
    Store::open(dir).with_context(|| format!("cannot open the store in {}", dir.display()))
}

/// The rules of the pipeline's classify stage, if it has one.
pub(super) fn classify_rules(pipeline: &Pipeline) -> Option<PathBuf> {
    pipeline.stages.iter().find_map(|s| match s {
        crate::config::StageConfig::Classify(c) => Some(c.rules.clone()),
        _ => None,
    })
}

/// The rules file: given, else the pipeline's classify stage, else the shipped rules.
pub(super) fn rules_path(given: Option<&Path>, pipeline: &Pipeline) -> PathBuf {
    given.map(Path::to_path_buf).unwrap_or_else(|| {
        pipeline
            .stages
            .iter()
            .find_map(|s| match s {
                crate::config::StageConfig::Classify(c) => Some(c.rules.clone()),
                _ => None,
            })
            .unwrap_or_else(|| PathBuf::from(crate::classify::rules::SHIPPED_NAME))
    })
}
