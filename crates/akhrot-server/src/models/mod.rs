//! The API's wire types that more than the server reads: the admin API's requests and answers,
//! shared by the handlers (which build them), the `akhrot` CLI (which reads them) and the
//! OpenAPI document (which describes them).

pub mod admin;
