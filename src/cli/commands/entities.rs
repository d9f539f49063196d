//! `sportello entities`: identifiers in a file or a ticket.

use super::*;

#[derive(Args, Debug)]
pub struct EntitiesArgs {
    file: Option<PathBuf>,
    #[arg(long)]
    ticket: Option<String>,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: EntitiesArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let EntitiesArgs { file, ticket, json } = args;
    let found = match (file, ticket) {
        (Some(file), None) => {
            // The same unpacking and extraction as `ingest`, with originals kept in a
            // scratch dir: nothing is filed, nor classified.
            let scratch = tempfile::tempdir().context("cannot create a scratch dir")?;
            let blobs = crate::store::blobs::BlobStore::new(scratch.path());
            let pipeline = Pipeline::default().without_classify();
            let processor = Processor::new(&pipeline, blobs, scratch.path())?;
            let item = runner::item_from_path(&file, None)
                .with_context(|| format!("cannot read {}", file.display()))?;
            processor.read(item)?.entities().to_vec()
        }
        (None, Some(code)) => {
            open_store(&data_dir(cli_data, &Pipeline::default()))?.entities(&code)?
        }
        _ => bail!("give a FILE or --ticket CODE"),
    };
    for e in &found {
        if json {
            out.json(e)?;
        } else {
            let validity = if e.valid { "" } else { "  (invalid)" };
            out.line(&format!(
                "{:<12} {:<32} {:>3.0}%  {}{validity}",
                e.kind.as_str(),
                e.value,
                e.confidence * 100.0,
                e.place
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
