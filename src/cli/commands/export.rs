//! `sportello export`: every ticket, whole, one JSON object per line.

use super::*;

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[arg(long, required = true)]
    jsonl: bool,
    /// Mask fiscal codes and phone numbers
    #[arg(long)]
    mask_personal: bool,
}

pub fn exec(args: ExportArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let ExportArgs {
        jsonl,
        mask_personal,
    } = args;
    if !jsonl {
        bail!("export needs --jsonl");
    }
    let store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
    let mut buf = std::io::BufWriter::new(&out.file);
    store.for_each_ticket(&mut |mut t| {
        if mask_personal {
            mask_ticket(&mut t);
        }
        serde_json::to_writer(&mut buf, &t)?;
        buf.write_all(b"\n")
    })?;
    buf.flush()?;
    Ok(ExitCode::SUCCESS)
}
