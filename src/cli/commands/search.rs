//! `sportello search`: full-text search over the store, as the archive page does.

use super::{data_dir, load_pipeline, one_line, open_store, FilterArgs, Out};
use crate::search::SearchQuery;
use crate::store::prelude::*;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct SearchArgs {
    query: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Pipeline whose store (`data_dir`) is searched
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: SearchArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let pipeline = load_pipeline(args.pipeline.as_deref())?;
    let store = open_store(&data_dir(cli_data, &pipeline))?;
    let q = SearchQuery::parse(&args.query)?;
    let hits = store.search(&q, &args.filter.to_filter()?)?;
    for h in &hits {
        if args.json {
            out.json(h)?;
        } else {
            out.line(&format!(
                "{}  {}  {}  {}\n    {}",
                h.code,
                h.protocol,
                h.channel,
                one_line(&h.subject, 70),
                one_line(&h.snippet, 200)
            ))?;
        }
    }
    if hits.is_empty() && !args.json {
        eprintln!("sportello: no ticket matches");
    }
    Ok(ExitCode::SUCCESS)
}
