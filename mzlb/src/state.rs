//! The state directory shared by `mzlb serve`, `mzlb up` and the CLI: the control API's address
//! and token (so the CLI needs no flags) and the durable enabled/disabled choice per ALB.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

const API_FILE: &str = "api.json";
const ALBS_FILE: &str = "albs.json";

/// Where the CLI finds the control API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiEndpoint {
    pub url: String,
    pub token: String,
}

/// What an operator chose per ALB, overriding the manifest's `spec.enabled`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlbChoices {
    pub enabled: BTreeMap<String, bool>,
}

#[derive(Clone, Debug)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// `explicit` (from `--state-dir` or `MZLB_STATE_DIR`), else the per-user state directory.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        let path = explicit.unwrap_or_else(|| {
            dirs::state_dir()
                .or_else(dirs::data_local_dir)
                .unwrap_or_else(std::env::temp_dir)
                .join("mzlb")
        });
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn create(&self) -> Result<()> {
        fs::create_dir_all(&self.path).map_err(|source| Error::State {
            path: self.path.clone(),
            source,
        })?;
        // The directory holds the API token: keep it private.
        fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700)).map_err(|source| Error::State {
            path: self.path.clone(),
            source,
        })
    }

    /// The token of an earlier start, or a new random one.
    pub fn token(&self) -> Result<String> {
        if let Ok(Some(existing)) = self.read_api() {
            return Ok(existing.token);
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| Error::State {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn write_api(&self, endpoint: &ApiEndpoint) -> Result<()> {
        self.write_json(API_FILE, endpoint)
    }

    pub fn read_api(&self) -> Result<Option<ApiEndpoint>> {
        self.read_json(API_FILE)
    }

    pub fn read_choices(&self) -> Result<AlbChoices> {
        Ok(self.read_json(ALBS_FILE)?.unwrap_or_default())
    }

    pub fn write_choices(&self, choices: &AlbChoices) -> Result<()> {
        self.write_json(ALBS_FILE, choices)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>> {
        let path = self.file(name);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::State { path, source }),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| Error::StateJson { path, source })
    }

    /// Write, fsync, rename: a crash leaves the old file or the new one, never half of one.
    fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let path = self.file(name);
        let tmp = self.file(&format!(".{name}.tmp"));
        let io = |source| Error::State {
            path: path.clone(),
            source,
        };
        let mut bytes = serde_json::to_vec_pretty(value).expect("state types serialize");
        bytes.push(b'\n');
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        fs::rename(&tmp, &path).map_err(io)?;
        // Make the rename itself durable.
        fs::File::open(&self.path).and_then(|d| d.sync_all()).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_and_api_round_trip_privately() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::resolve(Some(dir.path().join("s")));
        state.create().unwrap();
        assert_eq!(state.read_choices().unwrap(), AlbChoices::default());
        let mut choices = AlbChoices::default();
        choices.enabled.insert("alb2".into(), false);
        state.write_choices(&choices).unwrap();
        assert_eq!(state.read_choices().unwrap(), choices);

        let token = state.token().unwrap();
        assert_eq!(token.len(), 48);
        state
            .write_api(&ApiEndpoint {
                url: "http://127.0.0.1:1".into(),
                token: token.clone(),
            })
            .unwrap();
        assert_eq!(state.token().unwrap(), token, "the token survives restarts");
        let mode = fs::metadata(state.file(API_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_state_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::resolve(Some(dir.path().to_path_buf()));
        fs::write(state.file(ALBS_FILE), "{not json").unwrap();
        let err = state.read_choices().unwrap_err().to_string();
        assert!(err.contains("albs.json: not valid JSON"), "{err}");
    }
}
