//! Tauri's build step, with the app's own ACL manifest: the two approval commands exist only as
//! permissions (`allow-pending-approvals`, `allow-answer-approval`), which
//! `capabilities/prompt.json` grants to the prompt window alone. A window without that
//! capability (the main window, which shows the web UI from the loopback server) cannot call them.

fn main() {
    let manifest =
        tauri_build::AppManifest::new().commands(&["pending_approvals", "answer_approval"]);
    if let Err(e) = tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest)) {
        panic!("tauri build step failed: {e:#}");
    }
}
