//! `sportello users`: accounts of the web app, and API tokens for other systems.

use super::*;

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create an account; without --password-stdin a random password is made and printed
    Add {
        name: String,
        /// clerk, archivist or admin
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Accounts and their roles
    List,
    /// Create an API token for another system (printed once; the store keeps its hash)
    AddToken {
        name: String,
        /// clerk, archivist or admin
        #[arg(long)]
        role: String,
    },
    /// API tokens: name, role, created, revoked
    Tokens,
    /// Revoke an API token by name
    RevokeToken { name: String },
}

pub fn exec(command: UsersCommand, cli_data: &Option<PathBuf>, out: &mut Out) -> Result<ExitCode> {
    match command {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let role: crate::store::web::Role = role.parse().map_err(anyhow::Error::msg)?;
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("a user name is one word without spaces");
            }
            let (password, made) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                let p = line.trim_end_matches(['\r', '\n']).to_string();
                if p.chars().count() < 8 {
                    bail!("the password must have at least 8 characters");
                }
                (p, false)
            } else {
                (random_password(), true)
            };
            let hash = crate::web::hash_password(&password).map_err(anyhow::Error::msg)?;
            let mut store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
            store.add_user(&name, role, &hash)?;
            if made {
                out.line(&format!(
                    "user {name} ({role}) created; password: {password}"
                ))?;
            } else {
                out.line(&format!("user {name} ({role}) created"))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::AddToken { name, role } => {
            let role: crate::store::web::Role = role.parse().map_err(anyhow::Error::msg)?;
            let name = name.trim().to_string();
            if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!("a token name is one word without spaces");
            }
            let token = format!("spt_{}", crate::web::random_token());
            let mut store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
            store.add_api_token(
                &name,
                role,
                &crate::store::blobs::sha256_hex(token.as_bytes()),
            )?;
            out.line(&format!(
                "API token {name} ({role}) created; it is shown only now: {token}"
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::Tokens => {
            let store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
            for t in store.api_tokens()? {
                let state = t
                    .revoked_at
                    .map_or("live".to_string(), |at| format!("revoked {at}"));
                out.line(&format!(
                    "{}\t{}\t{}\t{state}",
                    t.name, t.role, t.created_at
                ))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::RevokeToken { name } => {
            let mut store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
            if !store.revoke_api_token(&name)? {
                bail!("no live API token named {name}");
            }
            out.line(&format!("API token {name} revoked"))?;
            Ok(ExitCode::SUCCESS)
        }
        UsersCommand::List => {
            let store = open_store(&data_dir(cli_data, &Pipeline::default()))?;
            for u in store.users()? {
                out.line(&format!("{}\t{}", u.name, u.role))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// 16 symbols without look-alikes (about 80 bits).
fn random_password() -> String {
    use rand::Rng;
    const SYMBOLS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| SYMBOLS[rng.gen_range(0..SYMBOLS.len())] as char)
        .collect()
}
