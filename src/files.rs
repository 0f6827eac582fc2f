//! `refnet policy`, `refnet permissions` and `refnet rules`: the data files
//! that decide what refnet does (redaction policy, permissions, routing
//! rules), validated and shown without a server.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file and print its effective matrix.
    Check {
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Print the policy compiled into refnet.
    Show,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PermissionsCommand {
    /// Validate an override file (no wider than the built-in table) and print it.
    Check {
        /// The permissions file (TOML).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RulesCommand {
    /// Validate a rule file and list its rules.
    Check {
        /// The rule file (TOML).
        file: PathBuf,
    },
    /// Show which rules fire for a referral's routing facts given as JSON
    /// (`child`, `nationality`, `purposes`, `needs`, `classification`, `county`,
    /// `urgency`, `filing_agency_kind`, `employer_involved`).
    Explain {
        /// The facts (JSON file, or - for standard input).
        facts: PathBuf,
        /// A rule file instead of the built-in rules.
        #[arg(long)]
        rules: Option<PathBuf>,
    },
}

/// `refnet policy check|show`.
pub(crate) fn policy(command: PolicyCommand) -> anyhow::Result<()> {
    match command {
        PolicyCommand::Check { file } => {
            let policy = refnet_core::policy::Policy::load(&file)?;
            println!("{}: valid\n", file.display());
            print!("{}", policy.matrix());
        }
        PolicyCommand::Show => {
            print!(
                "{}",
                refnet_core::policy::Policy::default_policy()?.matrix()
            );
        }
    }
    Ok(())
}

/// `refnet permissions [check FILE]`.
pub(crate) fn permissions(command: Option<PermissionsCommand>) -> anyhow::Result<()> {
    match command {
        None => print!(
            "{}",
            refnet_core::permissions::Permissions::default_permissions()?.matrix()
        ),
        Some(PermissionsCommand::Check { file }) => {
            let permissions = refnet_core::permissions::Permissions::load_override(&file)?;
            println!(
                "{}: valid (no wider than the built-in permissions)\n",
                file.display()
            );
            print!("{}", permissions.matrix());
        }
    }
    Ok(())
}

/// `refnet rules check|explain`.
pub(crate) fn rules(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { file } => {
            let rules = refnet_routing::rules::RuleSet::load(&file)?;
            println!("{}: valid", file.display());
            print!("{}", rules.describe());
        }
        RulesCommand::Explain { facts, rules } => {
            let rules = match rules {
                Some(file) => refnet_routing::rules::RuleSet::load(&file)?,
                None => refnet_routing::rules::RuleSet::default_rules()?,
            };
            let text = if facts.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&facts).with_context(|| facts.display().to_string())?
            };
            let facts: refnet_routing::rules::RoutingFacts =
                serde_json::from_str(&text).context("routing facts JSON")?;
            println!("rule set {}", rules.version());
            for (id, outcome) in rules.explain(&facts) {
                match outcome {
                    Ok(h) => println!(
                        "  fires   {id:<32} -> {} ({})",
                        refnet_core::auth::agency_kind_name(h.to),
                        h.purpose
                    ),
                    Err(why) => println!("  skipped {id:<32} {why}"),
                }
            }
            let routed: Vec<String> = rules
                .route(&facts)
                .into_iter()
                .map(|h| {
                    format!(
                        "{} (rule {})",
                        refnet_core::auth::agency_kind_name(h.to),
                        h.rule_id
                    )
                })
                .collect();
            if routed.is_empty() {
                let fallback = rules.fallback();
                println!(
                    "handoffs: none\nfallback: NEEDS_ROUTING; the filing agency's supervisors are notified and must route it within {} h, then {} is told",
                    fallback.route_within(&facts.urgency).num_hours(),
                    refnet_core::auth::agency_kind_name(fallback.escalate_to)
                );
            } else {
                println!("handoffs: {}", routed.join(", "));
                println!(
                    "fallback: a kind with no active agency in reach sends the referral to triage (NEEDS_ROUTING) as well"
                );
            }
        }
    }
    Ok(())
}
