//! `sportello ingest`: files tickets from files and folders, once.

use super::*;

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Channel of these items (default: email for messages, scanner otherwise)
    #[arg(long)]
    channel: Option<Channel>,
    #[arg(long)]
    json: bool,
    /// Only queue the items (originals kept, nothing read) for `sportello worker` processes
    #[arg(long)]
    enqueue: bool,
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn exec(args: IngestArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let IngestArgs {
        pipeline,
        channel,
        json,
        enqueue,
        paths,
    } = args;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let data = data_dir(cli_data, &pipeline);
    if !enqueue {
        warm_up(&pipeline, &data);
    }
    let mut store = open_store(&data)?;
    if enqueue {
        return enqueue_all(&mut store, &paths, channel, json, out);
    }
    retrain_if_wanted(&mut store, &pipeline, "before ingesting")?;
    let processor = Processor::new(&pipeline, store.blobs().clone(), store.data_dir())?;
    let (files, errors) = runner::collect_paths(&paths);
    let mut failed = errors.len();
    for e in &errors {
        eprintln!("sportello: {e}");
    }
    let mut progress = Progress::new(files.len() as u64, Unit::Items, json);
    let mut write_error = None;
    runner::ingest(
        &mut store,
        &processor,
        &pipeline,
        files,
        channel,
        |store, outcome| {
            if outcome.result.is_err() {
                failed += 1;
            }
            if let Err(e) = progress.suspend(|| report_outcome(out, store, &outcome, json)) {
                write_error.get_or_insert(e);
            }
            progress.item(outcome.pages.into(), outcome.flagged());
        },
    );
    progress.finish();
    if let Some(e) = write_error {
        return Err(e);
    }
    deliver_acks_once(&mut store, &pipeline)?;
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `ingest --enqueue`: every file queued for the workers, each reported.
fn enqueue_all(
    store: &mut Store,
    paths: &[PathBuf],
    channel: Option<Channel>,
    json: bool,
    out: &mut Out,
) -> Result<ExitCode> {
    let (files, errors) = runner::collect_paths(paths);
    let mut failed = errors.len();
    for e in &errors {
        eprintln!("sportello: {e}");
    }
    for path in files {
        let file = path.display().to_string();
        let queued = runner::item_from_path(&path, channel)
            .map_err(runner::ItemError::from)
            .and_then(|item| crate::queue::enqueue(store, &item));
        match queued {
            Ok(job) if json => {
                out.json(&serde_json::json!({"file": file, "outcome": "queued", "job": job}))?
            }
            Ok(job) => out.line(&format!("job {job:<8}  queued  {file}"))?,
            Err(e) => {
                failed += 1;
                eprintln!("sportello: {file}: {e}");
                if json {
                    out.json(&serde_json::json!({"file": file, "outcome": "error", "error": e.to_string()}))?;
                }
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
