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
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub fn exec(args: IngestArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let IngestArgs {
        pipeline,
        channel,
        json,
        paths,
    } = args;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
    // Tickets settled elsewhere since the last training (the web app was down, an
    // older model): the model is brought up to date before this batch is classified.
    if let Some(rules) = classify_rules(&pipeline) {
        let rules = Rules::load(&rules)?;
        // Intake goes on with the model there is when a training cannot be done.
        if topics::retrain_wanted(&store, &rules).unwrap_or(false) {
            retrain_now(&mut store, &rules, "before ingesting");
        }
    }
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
    // Acknowledgements of what was just filed: one round; what fails stays queued
    // for `run`.
    for sink in runner::out_sinks(&pipeline).map_err(anyhow::Error::msg)? {
        let (sent, not_sent) = crate::sinks::deliver(sink.as_ref(), &mut store, true);
        if sent + not_sent > 0 {
            eprintln!(
                "sportello: {sent} acknowledgement(s) by {} sent, {not_sent} failed (kept in the outbox)",
                sink.via().as_str()
            );
        }
    }
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
