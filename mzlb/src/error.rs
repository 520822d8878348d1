//! Errors of the mzlb library; each names the file, object or address at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Objects(#[from] zone_alb::Error),
    #[error(transparent)]
    Dns(#[from] dns::Error),
    #[error("{path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("{path}: not valid JSON: {source}")]
    StateJson { path: PathBuf, source: serde_json::Error },
    #[error("{object}: field `{field}`: {message}")]
    Config {
        object: String,
        field: String,
        message: String,
    },
    #[error("unknown ALB `{0}`")]
    UnknownAlb(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
