//! The subcommands, one module each, and the small helpers their output shares.

pub mod add;
pub mod approvals;
pub mod clients;
pub mod connect;
pub mod disconnect;
pub mod exec;
pub mod keys;
pub mod log;
pub mod mcp;
pub mod pause;
pub mod policy;
pub mod serve;
pub mod status;
pub mod token;
pub mod ui;

use anyhow::{Result, anyhow, bail};
use clap::Args;

#[derive(Args)]
pub struct JsonFlag {
    /// Print one JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a duration like 30m, 1h or 2d"))?;
    let mult = match unit {
        "s" => 1,
        "m" | "" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => bail!("`{s}` is not a duration like 30m, 1h or 2d"),
    };
    Ok(n.saturating_mul(mult))
}

pub fn ago(t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let d = akhrot_core::now_unix() - t;
            match d {
                d if d < 60 => "just now".into(),
                d if d < 3600 => format!("{}m ago", d / 60),
                d if d < 86400 => format!("{}h ago", d / 3600),
                d => format!("{}d ago", d / 86400),
            }
        }
    }
}

pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1h").unwrap(), 3600);
        assert_eq!(parse_duration("30m").unwrap(), 1800);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        assert!(parse_duration("soon").is_err());
    }
}
