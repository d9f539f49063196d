//! `sportello dossier`: every ticket of the same person or case, and links made by hand.

use super::{actor, data_dir, load_pipeline, one_line, open_store, Out};
use crate::service::tickets;
use crate::store::prelude::*;
use anyhow::{bail, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct DossierArgs {
    code: Option<String>,
    #[arg(long)]
    cf: Option<String>,
    #[arg(long = "case")]
    case_ref: Option<String>,
    /// Link CODE to this ticket by hand
    #[arg(long, requires = "code")]
    link: Option<String>,
    /// Undo a link between CODE and this ticket
    #[arg(long, requires = "code")]
    unlink: Option<String>,
    #[arg(long)]
    by: Option<String>,
    /// Pipeline whose store (`data_dir`) holds the tickets
    #[arg(long)]
    pipeline: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: DossierArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let DossierArgs {
        code,
        cf,
        case_ref,
        link,
        unlink,
        by,
        pipeline,
        json,
    } = args;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let mut store = open_store(&data_dir(cli_data, &pipeline))?;
    let actor = actor(by);
    if let (Some(code), Some(other)) = (&code, &link) {
        tickets::link(&mut store, code, other, true, &actor)?;
    }
    if let (Some(code), Some(other)) = (&code, &unlink) {
        tickets::link(&mut store, code, other, false, &actor)?;
    }
    let links = match (code, cf, case_ref) {
        (Some(code), None, None) => store.dossier(&code)?,
        (None, Some(cf), None) => {
            let cf = cf.trim().to_ascii_uppercase();
            if !crate::entities::fiscal_code_is_valid(&cf) {
                bail!(
                    "{} is not a valid fiscal code (check character or format)",
                    crate::entities::mask(crate::entities::Kind::FiscalCode, &cf)
                );
            }
            store.dossier_by(crate::entities::Kind::FiscalCode, &cf)?
        }
        (None, None, Some(case)) => {
            let value = crate::entities::extract(&case, "query")
                .into_iter()
                .find(|e| e.kind == crate::entities::Kind::CaseRef)
                .map(|e| e.value)
                .or_else(|| {
                    crate::entities::extract(&format!("pratica {case}"), "query")
                        .into_iter()
                        .find(|e| e.kind == crate::entities::Kind::CaseRef)
                        .map(|e| e.value)
                })
                .unwrap_or(case);
            store.dossier_by(crate::entities::Kind::CaseRef, &value)?
        }
        _ => bail!("give one of: CODE, --cf FISCALCODE, --case NUMBER"),
    };
    for l in &links {
        if json {
            out.json(l)?;
        } else {
            let mark = if l.suggested { "?" } else { " " };
            out.line(&format!(
                "{mark} {}  {}  {}  {:<7}  {}\n      {}",
                l.code,
                l.protocol,
                &l.received_at[..10.min(l.received_at.len())],
                l.channel,
                one_line(&l.subject, 60),
                l.reasons.join("; ")
            ))?;
        }
    }
    if links.is_empty() && !json {
        eprintln!("sportello: no linked tickets");
    }
    Ok(ExitCode::SUCCESS)
}
