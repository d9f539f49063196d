//! `sportello classify`: classifies requests from stdin or JSON Lines (no ticket).

use super::*;

#[derive(Args, Debug)]
pub struct ClassifyArgs {
    #[arg(long)]
    pipeline: Option<PathBuf>,
    /// Rules file (default: the pipeline's, else the shipped rules)
    #[arg(long)]
    rules: Option<PathBuf>,
    #[arg(long)]
    jsonl: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn exec(args: ClassifyArgs, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    let ClassifyArgs {
        pipeline,
        rules,
        jsonl,
        json,
    } = args;
    let pipeline = load_pipeline(pipeline.as_deref())?;
    let data = data_dir(cli_data, &pipeline);
    let classifier = Classifier::open(&rules_path(rules.as_deref(), &pipeline), &data)?;
    let records: Vec<Labelled> = match jsonl {
        Some(path) => read_unlabelled(&path)?,
        None => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read stdin")?;
            let subject = crate::pipeline::subject_from_letter(&text).unwrap_or_default();
            vec![Labelled {
                id: String::new(),
                subject,
                body: text,
                topic: String::new(),
                channel: None,
                sender_email: None,
            }]
        }
    };
    for r in records {
        let channel = r.channel.as_deref().and_then(|c| c.parse().ok());
        let c = classifier.classify(channel, r.sender_email.as_deref(), &r.subject, &r.body)?;
        if json {
            out.json(
                &serde_json::json!({"id": r.id, "topic": c.topic, "confidence": c.confidence,
                "reason": c.reason, "secondary": c.secondary, "office": c.office}),
            )?;
        } else {
            out.line(&format!(
                "{}{}  {:.0}%  {}",
                if r.id.is_empty() {
                    String::new()
                } else {
                    format!("{}  ", r.id)
                },
                c.topic,
                c.confidence * 100.0,
                c.reason
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
