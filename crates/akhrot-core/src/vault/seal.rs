//! What each sealed value of the vault is bound to (table, row, purpose; see
//! [`crate::crypto`]): a value moved to another row or column fails to open.

use crate::crypto::Binding;

/// The plaintext of the key check value: a master key that opens it is the vault's own.
pub(super) const KCV_PLAINTEXT: &[u8] = b"akhrot key check value v1";

pub(super) fn kcv_binding() -> Binding<'static> {
    Binding {
        table: "meta",
        row: "kcv",
        purpose: "key-check",
    }
}

pub(super) fn wrap_aad(vault_id: &str) -> Vec<u8> {
    format!("akhrot/v1|{vault_id}|meta|wrapped_key|master-key").into_bytes()
}

pub(super) fn client_binding(provider: &str) -> Binding<'_> {
    Binding {
        table: "oauth_clients",
        row: provider,
        purpose: "client-secret",
    }
}

pub(super) fn client_settings_binding(provider: &str) -> Binding<'_> {
    Binding {
        table: "oauth_clients",
        row: provider,
        purpose: "client-settings",
    }
}

pub(super) fn conn_binding(id: &str) -> Binding<'_> {
    Binding {
        table: "connections",
        row: id,
        purpose: "credentials",
    }
}
