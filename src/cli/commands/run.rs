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
    if let Some(rules) = pipeline.classify_rules() {
        topics::Trainer::new(store.data_dir(), rules).kick_if_wanted();
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
    let mut write_error = None;
    // Leads the sources while it holds the lead. A lead lost (a standby ended this session
    // after finding it silent, or the register went away) stops the sources, and this `run`
    // stands by again.
    while let Some(leadership) = wait_to_lead(&store, once, &stop)? {
        let sources_stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let heartbeat = spawn_heartbeat(leadership, &stop, &sources_stop, &done)?;
        let ran = runner::run(
            &mut store,
            &processor,
            &pipeline,
            sources_stop.clone(),
            once,
            |store, outcome| {
                if let Err(e) = report_outcome(out, store, &outcome, json) {
                    write_error.get_or_insert(e);
                }
            },
        );
        done.store(true, Ordering::SeqCst);
        let lost = heartbeat.join().unwrap_or(None);
        ran.map_err(anyhow::Error::msg)?;
        match lost {
            Some(why) if !once && !stop.load(Ordering::SeqCst) => eprintln!(
                "sportello: this `run` lost the lead of the sources ({why}); it stopped them and stands by"
            ),
            _ => break,
        }
    }
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

/// Holds the lead while the sources run, proving it every [`Leadership::HEARTBEAT`]: on a
/// signal, or when the lead is lost, it stops the sources; it lets the lead go only when
/// they are `done`. Returns why the lead was lost, if it was.
fn spawn_heartbeat(
    mut leadership: crate::store::Leadership,
    stop: &Arc<AtomicBool>,
    sources_stop: &Arc<AtomicBool>,
    done: &Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<Option<String>>> {
    let (stop, sources_stop, done) = (stop.clone(), sources_stop.clone(), done.clone());
    let handle = std::thread::Builder::new()
        .name("leader heartbeat".into())
        .spawn(move || {
            let mut last = std::time::Instant::now();
            let mut lost = None;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if stop.load(Ordering::SeqCst) {
                    sources_stop.store(true, Ordering::SeqCst);
                }
                if lost.is_none() && last.elapsed() >= crate::store::Leadership::HEARTBEAT {
                    last = std::time::Instant::now();
                    if let Err(e) = leadership.check() {
                        tracing::error!("lost the lead of the sources: {e}");
                        lost = Some(e.to_string());
                        sources_stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            drop(leadership);
            lost
        })
        .context("cannot start the leader's heartbeat")?;
    Ok(handle)
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
