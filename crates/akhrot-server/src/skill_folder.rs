//! `skills/akhrot/SKILL.md`, the skill in the layout agent skill installers expect
//! (`npx skills add <repo>`), is the served skill document (`GET /ai/skill`) rendered for the
//! default port, under a front matter. This test keeps the two equal, so they cannot drift:
//! when `skill.md` or the catalog changes, regenerate the file with
//!
//! ```sh
//! AKHROT_BLESS=1 cargo test -p akhrot-server skill_folder
//! ```
#![allow(clippy::unwrap_used)]

use akhrot_core::catalog::Catalog;

/// What the installers read: the skill's name and when to use it.
const FRONT_MATTER: &str = "---
name: akhrot
description: Get the user's OAuth tokens and API keys (Google, GitHub, Slack, Notion, OpenAI, Stripe, Telegram and 30 more) from Akhrot, the credential broker on the user's own machine, or call those APIs through it without holding the credential, over its loopback HTTP API, its MCP server or `akhrot exec`. Use when a task needs one of the user's accounts or API keys.
---

";

/// The instance the file describes: `akhrot serve` on its default port.
fn expected() -> String {
    let base = format!("http://127.0.0.1:{}", crate::DEFAULT_PORT);
    let catalog = Catalog::builtin().unwrap();
    format!(
        "{FRONT_MATTER}{}",
        crate::render::render_skill(&base, &catalog)
    )
}

#[test]
fn skill_folder_matches_the_served_skill() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../skills/akhrot/SKILL.md");
    let want = expected();
    if std::env::var_os("AKHROT_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} differs from the served skill document; regenerate it with \
         `AKHROT_BLESS=1 cargo test -p akhrot-server skill_folder`",
        path.display()
    );
}

#[test]
fn front_matter_is_what_installers_parse() {
    let text = expected();
    let fm = text
        .strip_prefix("---\n")
        .unwrap()
        .split("\n---\n")
        .next()
        .unwrap();
    let keys: Vec<&str> = fm.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(keys, ["name", "description"]);
    assert!(fm.contains("name: akhrot\n"));
    // Plain YAML scalars: no `: ` or ` #` inside a value, nothing YAML reads as syntax first.
    for line in fm.lines() {
        let value = line.split_once(": ").unwrap().1;
        assert!(!value.contains(": ") && !value.contains(" #"), "{line}");
        assert!(!value.starts_with(['`', '"', '\'', '[', '{', '&', '*', '!', '|', '>', '%', '@']));
    }
    // No unrendered placeholders reach the file.
    assert!(!text.contains("{{"), "a placeholder was left in the skill");
}
