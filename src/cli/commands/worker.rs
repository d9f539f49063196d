//! `sportello worker`: processes the items `ingest --enqueue` queued.

use super::*;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Pipeline whose stages, rules and store are used
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Work until no job is due, then exit (else until SIGINT/SIGTERM)
    #[arg(long)]
    once: bool,
    #[arg(long)]
    json: bool,
    /// Show the queue (jobs queued, running and by whom, parked with their error) and exit
    #[arg(long, conflicts_with = "once")]
    status: bool,
    #[command(flatten)]
    lease: LeaseArgs,
}

pub fn exec(args: WorkerArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let WorkerArgs {
        pipeline,
        once,
        json,
        status,
        lease,
    } = args;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let data = data_dir(cli_data, &pipeline);
    if !status {
        warm_up(&pipeline, &data);
    }
    let mut store = open_store(&data)?;
    if status {
        return show_status(&store, json, out);
    }
    retrain_if_wanted(&mut store, &pipeline, "before working")?;
    let processor = Processor::new(&pipeline, store.blobs().clone(), store.data_dir())?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handler")?;
    }
    let settings = crate::queue::WorkerSettings::new(lease.lease_secs, once);
    tracing::info!("worker {} started", settings.name);
    let mut failed = 0usize;
    let mut write_error = None;
    crate::queue::work(
        &mut store,
        &processor,
        &pipeline,
        &settings,
        &stop,
        |store, outcome| {
            if outcome.result.is_err() {
                failed += 1;
            }
            if let Err(e) = report_outcome(out, store, &outcome, json) {
                write_error.get_or_insert(e);
            }
        },
    );
    if let Some(e) = write_error {
        return Err(e);
    }
    deliver_acks_once(&mut store, &pipeline)?;
    let counts = store.job_counts()?;
    if counts.parked > 0 {
        eprintln!(
            "sportello: {} job(s) parked after {} attempts each (their originals are kept)",
            counts.parked,
            crate::queue::MAX_ATTEMPTS
        );
    }
    Ok(if once && failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `worker --status`: what the queue holds.
fn show_status(store: &Store, json: bool, out: &mut Out) -> Result<ExitCode> {
    let counts = store.job_counts()?;
    let running = store.running_jobs()?;
    let parked = store.parked_jobs()?;
    if json {
        out.json(&serde_json::json!({
            "queued": counts.queued,
            "running": running.iter().map(|(id, worker, lease_until)| {
                serde_json::json!({"job": id, "worker": worker, "lease_until": lease_until})
            }).collect::<Vec<_>>(),
            "parked": parked.iter().map(|(id, description, attempts, error)| {
                serde_json::json!({"job": id, "item": serde_json::from_str::<serde_json::Value>(description).ok(), "attempts": attempts, "error": error})
            }).collect::<Vec<_>>(),
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    out.line(&format!(
        "queued {}  running {}  parked {}",
        counts.queued, counts.running, counts.parked
    ))?;
    for (id, worker, lease_until) in &running {
        out.line(&format!(
            "job {id:<8}  running  by {worker}, lease until {lease_until}"
        ))?;
    }
    for (id, description, attempts, error) in &parked {
        let origin = serde_json::from_str::<serde_json::Value>(description)
            .ok()
            .and_then(|v| v["origin"].as_str().map(str::to_string))
            .unwrap_or_default();
        out.line(&format!(
            "job {id:<8}  parked   {origin}  after {attempts} attempts: {}",
            one_line(error, 160)
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}
