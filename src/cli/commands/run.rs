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
    #[command(flatten)]
    lease: LeaseArgs,
}

pub fn exec(args: RunArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let RunArgs {
        pipeline: path,
        once,
        json,
        lease,
    } = args;
    let pipeline = Pipeline::load_for_start(&path)?;
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
    let processor = Processor::new(&pipeline, store.blobs().clone(), store.data_dir())?;
    // A retrain that is due runs beside intake, never in its way.
    if let Some(rules) = classify_rules(&pipeline) {
        topics::Trainer::new(store.data_dir(), &rules).kick_if_wanted();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // The queue's worker stops on a signal too, or when the sources are done.
    let queue_stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        for flag in [&stop, &queue_stop] {
            signal_hook::flag::register(signal, flag.clone())
                .context("cannot install signal handler")?;
        }
    }
    // Items queued by `ingest --enqueue` are worked off beside the sources, one at a time, on
    // a connection of their own (start `sportello worker` processes for more); with `--once`,
    // until none is due.
    let queue_worker = crate::queue::spawn_worker(
        &pipeline,
        store.data_dir(),
        crate::queue::WorkerSettings::new(lease.lease_secs, once),
        queue_stop.clone(),
    )
    .map_err(anyhow::Error::msg)?;
    let leadership = wait_to_lead(&store, once, &stop)?;
    let mut write_error = None;
    if leadership.is_some() {
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
    }
    drop(leadership);
    if !once {
        // The job in hand is finished first.
        queue_stop.store(true, Ordering::SeqCst);
    }
    let _ = queue_worker.join();
    if stop.load(Ordering::SeqCst) {
        tracing::info!("stopped by signal");
    }
    write_error.map_or(Ok(ExitCode::SUCCESS), Err)
}

/// Waits to lead the store's sources (see `Store::try_lead`), saying so once when another
/// `run` leads; `--once` does not wait. None: this one does not lead (or was stopped).
fn wait_to_lead(
    store: &Store,
    once: bool,
    stop: &AtomicBool,
) -> Result<Option<crate::store::Leadership>> {
    // One `run` leads the sources of a store; another stands by, working the queue, and takes
    // over within a second of the leader's end. `--once` does not wait to lead.
    let mut said = false;
    loop {
        if let Some(lead) = store.try_lead()? {
            if said {
                eprintln!("sportello: the other `run` stopped; this one leads the sources now");
            }
            return Ok(Some(lead));
        }
        if !said {
            eprintln!(
                "sportello: another `run` leads the sources of this store; {}",
                if once {
                    "this one only works the queue"
                } else {
                    "standing by to take over (working the queue meanwhile)"
                }
            );
            said = true;
        }
        if once || stop.load(Ordering::SeqCst) {
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}
