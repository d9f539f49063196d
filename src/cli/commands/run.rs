//! `sportello run`: watches every source of a pipeline until SIGINT/SIGTERM.

use super::*;

#[derive(Args, Debug)]
pub struct RunArgs {
    #[arg(long)]
    pipeline: PathBuf,
    /// Take what the folders hold now, then exit (for cron jobs and scripts)
    #[arg(long)]
    once: bool,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: RunArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let RunArgs {
        pipeline: path,
        once,
        json,
    } = args;
    let pipeline = Pipeline::load_for_start(&path)?;
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
    let processor = Processor::new(&pipeline, store.blobs().clone(), store.data_dir())?;
    // A retrain that is due runs beside intake, never in its way.
    if let Some(rules) = classify_rules(&pipeline) {
        topics::Trainer::new(store.data_dir(), &rules).kick_if_wanted();
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handler")?;
    }
    let mut write_error = None;
    runner::run(
        &mut store,
        &processor,
        &pipeline,
        stop.clone(),
        once,
        |store, outcome| {
            if let Err(e) = report_outcome(out, store, &outcome, json) {
                write_error.get_or_insert(e);
            }
        },
    )
    .map_err(anyhow::Error::msg)?;
    if stop.load(Ordering::SeqCst) {
        tracing::info!("stopped by signal");
    }
    write_error.map_or(Ok(ExitCode::SUCCESS), Err)
}
