//! `sportello users`: accounts of the web app.

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
