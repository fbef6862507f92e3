//! TLS to PostgreSQL, as the connection string's `sslmode` and `sslrootcert` say.
//!
//! tokio-postgres decides only whether to encrypt (`disable`, `prefer`, `require`) and leaves
//! the server's certificate to the TLS connector; it refuses `verify-ca`, `verify-full` and
//! `sslrootcert`. So those two settings are taken out of the connection string here, before
//! tokio-postgres parses the rest, and turned into a rustls configuration with the meaning
//! libpq gives them:
//!
//! | sslmode | encrypted | certificate checked |
//! |---|---|---|
//! | `disable` | never | — |
//! | `prefer` (the default) | when the server offers it | no (chain only with `sslrootcert`) |
//! | `require` | always | no (chain only with `sslrootcert`, as libpq does) |
//! | `verify-ca` | always | chain to a trusted root |
//! | `verify-full` | always | chain, and the host name or address in the URL |
//!
//! Trusted roots are the PEM certificates in `sslrootcert` when it is given, else the Mozilla
//! root program's (`webpki-roots`), which covers servers with publicly issued certificates.
//! TLS does not apply to Unix sockets (PostgreSQL refuses it there, and libpq ignores
//! `sslmode` for them), so a configuration of sockets only connects without it.
//!
//! The cryptography is rustls with the `ring` provider, passed explicitly rather than taken
//! from the process default, so that another library installing a different default (the
//! EventStoreDB client does) changes nothing here.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connector every connection of a [`crate::Database`] uses.
pub type TlsConnector = MakeRustlsConnect;

/// The stream of a dedicated connection ([`crate::Database::connect_dedicated`]).
pub type TlsStream =
    <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket>>::Stream;

/// How the server's certificate is checked, as `sslmode` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            "allow" => {
                return Err("sslmode=allow is not supported; use prefer or require".to_owned())
            }
            other => {
                return Err(format!(
                    "unknown sslmode {other:?} (disable, prefer, require, verify-ca, verify-full)"
                ))
            }
        })
    }

    /// What tokio-postgres is told: whether to encrypt, and whether it must.
    fn encryption(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS settings of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub mode: TlsMode,
    /// PEM file of the certificates to trust instead of the Mozilla roots (`sslrootcert`).
    pub root_certificate: Option<PathBuf>,
}

impl TlsSettings {
    /// The settings tokio-postgres' own `sslmode` stands for: no certificate checks.
    pub fn from_config(config: &tokio_postgres::Config) -> Self {
        let mode = match config.get_ssl_mode() {
            SslMode::Disable => TlsMode::Disable,
            SslMode::Require => TlsMode::Require,
            _ => TlsMode::Prefer,
        };
        Self {
            mode,
            root_certificate: None,
        }
    }

    /// Take `sslmode` and `sslrootcert` out of `url` (a `postgres://` URL or `key=value`
    /// pairs): the rest, for tokio-postgres, and the TLS settings.
    pub fn split_url(url: &str) -> Result<(String, Self), String> {
        let (rest, pairs) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            split_query(url)
        } else {
            split_key_values(url)?
        };
        let mut settings = Self {
            mode: TlsMode::Prefer,
            root_certificate: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "sslmode" => settings.mode = TlsMode::parse(&value)?,
                _ => settings.root_certificate = Some(PathBuf::from(value)),
            }
        }
        Ok((rest, settings))
    }

    /// Apply the settings to `config` (which then says whether to encrypt) and build the
    /// connector that checks the server's certificate as they say.
    pub fn apply(&self, config: &mut tokio_postgres::Config) -> Result<TlsConnector, String> {
        let sockets_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_)));
        config.ssl_mode(if sockets_only {
            SslMode::Disable
        } else {
            self.mode.encryption()
        });
        self.connector()
    }

    fn connector(&self) -> Result<TlsConnector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS protocol versions: {e}"))?;
        let checks_chain = matches!(self.mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
            || self.root_certificate.is_some();
        let verifier: Arc<dyn ServerCertVerifier> = if checks_chain {
            let roots = Arc::new(self.roots()?);
            let chain_and_name = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("TLS certificate verifier: {e}"))?;
            if self.mode == TlsMode::VerifyFull {
                chain_and_name
            } else {
                Arc::new(ChainOnly(chain_and_name))
            }
        } else {
            Arc::new(EncryptionOnly(provider.signature_verification_algorithms))
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let Some(path) = &self.root_certificate else {
            return Ok(RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            });
        };
        let unreadable = |e: &dyn std::fmt::Display| format!("sslrootcert {}: {e}", path.display());
        let mut roots = RootCertStore::empty();
        for certificate in CertificateDer::pem_file_iter(path).map_err(|e| unreadable(&e))? {
            let certificate = certificate.map_err(|e| unreadable(&e))?;
            roots.add(certificate).map_err(|e| unreadable(&e))?;
        }
        if roots.is_empty() {
            return Err(unreadable(&"no PEM certificate in the file"));
        }
        Ok(roots)
    }
}

/// The TLS parameters of a connection string; everything else is tokio-postgres' to parse.
fn is_tls_parameter(name: &str) -> bool {
    name == "sslmode" || name == "sslrootcert"
}

/// Split the TLS parameters out of a URL's query. The query starts at the first `?` after the
/// credentials, which end at the first `@` (as tokio-postgres reads them), so a `?` in a
/// password does not start it.
fn split_query(url: &str) -> (String, Vec<(String, String)>) {
    let authority = url.find("://").map_or(0, |index| index + 3);
    let after_credentials = url[authority..]
        .find('@')
        .map_or(authority, |index| authority + index + 1);
    let Some(query_start) = url[after_credentials..]
        .find('?')
        .map(|index| after_credentials + index)
    else {
        return (url.to_owned(), Vec::new());
    };
    let (base, query) = (&url[..query_start], &url[query_start + 1..]);
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name);
        if is_tls_parameter(&name) {
            taken.push((name, percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex = bytes
            .get(index + 1..index + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Split the TLS parameters out of `key=value` pairs (values may be single-quoted, with `\`
/// escaping a quote or a backslash), keeping every other pair as written.
fn split_key_values(text: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut kept: Vec<&str> = Vec::new();
    let mut taken = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .ok_or_else(|| format!("connection setting {rest:?} has no value"))?;
        let name = &rest[..name_end];
        let after_name = rest[name_end..].trim_start();
        let after_equals = after_name
            .strip_prefix('=')
            .ok_or_else(|| format!("connection setting {name:?} has no value"))?
            .trim_start();
        let (value, value_length) = key_value(after_equals)?;
        let pair_length = rest.len() - after_equals.len() + value_length;
        if is_tls_parameter(name) {
            taken.push((name.to_owned(), value));
        } else {
            kept.push(&rest[..pair_length]);
        }
        rest = rest[pair_length..].trim_start();
    }
    Ok((kept.join(" "), taken))
}

/// A value at the start of `text`, unquoted and unescaped, and how many bytes it took.
fn key_value(text: &str) -> Result<(String, usize), String> {
    let quoted = text.starts_with('\'');
    let mut value = String::new();
    let mut characters = text.char_indices().skip(usize::from(quoted));
    while let Some((index, character)) = characters.next() {
        match character {
            '\\' => match characters.next() {
                Some((_, escaped)) => value.push(escaped),
                None => return Err("a connection setting ends in a lone backslash".to_owned()),
            },
            '\'' if quoted => return Ok((value, index + 1)),
            c if c.is_whitespace() && !quoted => return Ok((value, index)),
            c => value.push(c),
        }
    }
    if quoted {
        return Err("a quoted connection setting is not closed".to_owned());
    }
    Ok((value, text.len()))
}

/// `require` and `prefer` without `sslrootcert`: the link is encrypted, but any certificate is
/// accepted (libpq's meaning; it stops passive listening, not a server in the middle). The
/// handshake's signatures are still checked, so the key exchange is with the certificate's
/// holder.
#[derive(Debug)]
struct EncryptionOnly(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for EncryptionOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca` (and `require` with `sslrootcert`): the chain must lead to a trusted root, the
/// name is not compared. The full check runs and only a name mismatch, which it reports after
/// the chain has been accepted, is let through.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls12_signature(message, certificate, signature)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .verify_tls13_signature(message, certificate, signature)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_of_a_url_and_the_rest_is_kept() {
        let (rest, settings) = TlsSettings::split_url(
            "postgres://ledger:pw@postgres:5432/ledger?application_name=x&sslmode=verify-full&sslrootcert=%2Fcerts%2Fca.crt&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://ledger:pw@postgres:5432/ledger?application_name=x&connect_timeout=3"
        );
        assert_eq!(settings.mode, TlsMode::VerifyFull);
        assert_eq!(
            settings.root_certificate,
            Some(PathBuf::from("/certs/ca.crt"))
        );
        let (rest, settings) = TlsSettings::split_url("postgresql://db/ledger").unwrap();
        assert_eq!(rest, "postgresql://db/ledger");
        assert_eq!(settings.mode, TlsMode::Prefer);
        // A `?` in the password does not start the query.
        let (rest, settings) =
            TlsSettings::split_url("postgres://ledger:p?w@db/ledger?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://ledger:p?w@db/ledger");
        assert_eq!(settings.mode, TlsMode::Require);
    }

    #[test]
    fn the_tls_parameters_are_taken_out_of_key_value_pairs() {
        let (rest, settings) = TlsSettings::split_url(
            "host=db  sslmode = verify-ca password='it\\'s' sslrootcert='/a b/c.crt' dbname=ledger",
        )
        .unwrap();
        assert_eq!(rest, "host=db password='it\\'s' dbname=ledger");
        assert_eq!(settings.mode, TlsMode::VerifyCa);
        assert_eq!(settings.root_certificate, Some(PathBuf::from("/a b/c.crt")));
    }

    #[test]
    fn sslmode_allow_and_unknown_modes_are_refused() {
        for url in [
            "postgres://db/ledger?sslmode=allow",
            "postgres://db/ledger?sslmode=secure",
            "host=db sslmode=allow",
        ] {
            assert!(TlsSettings::split_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn tls_is_off_for_a_unix_socket_whatever_sslmode_says() {
        let (rest, settings) =
            TlsSettings::split_url("postgres://%2Frun%2Fpostgresql/ledger?sslmode=require")
                .unwrap();
        let mut config: tokio_postgres::Config = rest.parse().unwrap();
        settings.apply(&mut config).unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Disable);
        let (rest, settings) =
            TlsSettings::split_url("postgres://db/ledger?sslmode=verify-full").unwrap();
        let mut config: tokio_postgres::Config = rest.parse().unwrap();
        settings.apply(&mut config).unwrap();
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn a_missing_or_empty_root_certificate_file_is_refused() {
        let settings = TlsSettings {
            mode: TlsMode::VerifyFull,
            root_certificate: Some(PathBuf::from("/nonexistent/root.crt")),
        };
        let mut config = tokio_postgres::Config::new();
        config.host("db");
        assert!(settings.apply(&mut config).is_err());
    }
}
