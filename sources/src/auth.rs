//! Webhook authentication, pure: HMAC signatures of the body (GitHub's
//! `X-Hub-Signature-256: sha256=<hex>` and a generic header/algorithm/prefix/
//! encoding form), basic auth and bearer tokens. Every comparison of a secret is
//! constant-time.

use base64::Engine as _;
use cebus_api::{HmacAlgorithm, SignatureEncoding};
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName, header};
use sha2::{Sha256, Sha512};
use subtle::ConstantTimeEq;

/// GitHub's signature header, the default of `auth.hmac.header`.
pub const GITHUB_SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Why a request was not authenticated (answered with 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The signature header is absent.
    #[error("missing signature header {0}")]
    MissingSignature(String),
    /// The signature header is not `<prefix><encoded signature>`.
    #[error("malformed signature in {0}")]
    MalformedSignature(String),
    /// The signature names another algorithm (`sha1=` where `sha256=` is expected).
    #[error("signature in {header} uses {found}; expected {expected}")]
    WrongAlgorithm {
        /// Header.
        header: String,
        /// What the request used.
        found: String,
        /// What the source expects.
        expected: String,
    },
    /// The signature does not match the body.
    #[error("signature in {0} does not match the body")]
    BadSignature(String),
    /// No `Authorization` header of the expected scheme.
    #[error("missing {0} credentials")]
    MissingCredentials(&'static str),
    /// Wrong user, password or token.
    #[error("invalid {0} credentials")]
    BadCredentials(&'static str),
}

impl AuthError {
    /// The `WWW-Authenticate` challenge for credential errors.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            AuthError::MissingCredentials("basic") | AuthError::BadCredentials("basic") => {
                Some("Basic realm=\"cebus\"")
            }
            AuthError::MissingCredentials(_) | AuthError::BadCredentials(_) => Some("Bearer"),
            _ => None,
        }
    }
}

/// An HMAC check with its key.
#[derive(Clone)]
pub struct HmacCheck {
    /// Header carrying the signature.
    pub header: HeaderName,
    /// Hash function.
    pub algorithm: HmacAlgorithm,
    /// Text before the encoded signature.
    pub prefix: String,
    /// Hex or base64.
    pub encoding: SignatureEncoding,
    /// The shared secret.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for HmacCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HmacCheck")
            .field("header", &self.header)
            .field("algorithm", &self.algorithm)
            .field("prefix", &self.prefix)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

/// Every check a webhook applies. With both `basic` and `bearer` (they share the
/// `Authorization` header) either one passing is enough; `hmac` always applies.
#[derive(Clone, Default)]
pub struct AuthPlan {
    /// Body signature.
    pub hmac: Option<HmacCheck>,
    /// User name and password.
    pub basic: Option<(String, Vec<u8>)>,
    /// Token.
    pub bearer: Option<Vec<u8>>,
}

impl std::fmt::Debug for AuthPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthPlan")
            .field("hmac", &self.hmac)
            .field("basic", &self.basic.as_ref().map(|(u, _)| u))
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

/// The HMAC of `body` with `key`.
pub fn sign(algorithm: HmacAlgorithm, key: &[u8], body: &[u8]) -> Vec<u8> {
    match algorithm {
        HmacAlgorithm::Sha256 => {
            let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        HmacAlgorithm::Sha512 => {
            let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("HMAC takes any key length");
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
    }
}

/// Checks the request's signature of `body`.
pub fn verify_hmac(check: &HmacCheck, headers: &HeaderMap, body: &[u8]) -> Result<(), AuthError> {
    let name = check.header.as_str().to_owned();
    let value = headers
        .get(&check.header)
        .ok_or_else(|| AuthError::MissingSignature(name.clone()))?
        .to_str()
        .map_err(|_| AuthError::MalformedSignature(name.clone()))?
        .trim();
    let Some(encoded) = value.strip_prefix(check.prefix.as_str()) else {
        // `sha1=…` where `sha256=…` is expected: say which algorithm was used.
        return Err(match value.split_once('=') {
            Some((alg, _)) if !alg.is_empty() && alg.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                AuthError::WrongAlgorithm {
                    header: name,
                    found: alg.to_owned(),
                    expected: check.algorithm.as_str().to_owned(),
                }
            }
            _ => AuthError::MalformedSignature(name),
        });
    };
    let given = match check.encoding {
        SignatureEncoding::Hex => decode_hex(encoded),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok(),
    }
    .ok_or_else(|| AuthError::MalformedSignature(name.clone()))?;
    let expected = sign(check.algorithm, &check.key, body);
    if bool::from(expected.ct_eq(&given)) {
        Ok(())
    } else {
        Err(AuthError::BadSignature(name))
    }
}

/// Checks basic and bearer credentials (when configured).
pub fn verify_credentials(plan: &AuthPlan, headers: &HeaderMap) -> Result<(), AuthError> {
    let (basic, bearer) = (plan.basic.as_ref(), plan.bearer.as_ref());
    if basic.is_none() && bearer.is_none() {
        return Ok(());
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let scheme = |s: &str| -> Option<&str> {
        let (scheme, rest) = auth?.split_once(' ')?;
        scheme.eq_ignore_ascii_case(s).then(|| rest.trim())
    };
    let mut first_error = None;
    if let Some((user, password)) = basic {
        match scheme("basic") {
            None => first_error = Some(AuthError::MissingCredentials("basic")),
            Some(encoded) => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_default();
                let (u, p) = match decoded.iter().position(|&b| b == b':') {
                    Some(i) => (&decoded[..i], &decoded[i + 1..]),
                    None => (&decoded[..], &[][..]),
                };
                // Both compared, whatever the first says.
                let ok = u.ct_eq(user.as_bytes()) & p.ct_eq(password);
                if bool::from(ok) {
                    return Ok(());
                }
                first_error = Some(AuthError::BadCredentials("basic"));
            }
        }
    }
    if let Some(token) = bearer {
        match scheme("bearer") {
            Some(given) if bool::from(given.as_bytes().ct_eq(token)) => return Ok(()),
            Some(_) => return Err(AuthError::BadCredentials("bearer")),
            None if first_error.is_none() => {
                return Err(AuthError::MissingCredentials("bearer"));
            }
            None => {}
        }
    }
    Err(first_error.unwrap_or(AuthError::MissingCredentials("bearer")))
}

/// Lowercase or uppercase hex to bytes.
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| (b as char).to_digit(16);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
}

/// Bytes to lowercase hex.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(key: &str) -> HmacCheck {
        HmacCheck {
            header: HeaderName::from_static(GITHUB_SIGNATURE_HEADER),
            algorithm: HmacAlgorithm::Sha256,
            prefix: "sha256=".into(),
            encoding: SignatureEncoding::Hex,
            key: key.as_bytes().to_vec(),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn github_example_signature() {
        // GitHub's documented example: secret "It's a Secret to Everybody",
        // payload "Hello, World!".
        let check = github("It's a Secret to Everybody");
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        let body = b"Hello, World!";
        assert_eq!(
            encode_hex(&sign(HmacAlgorithm::Sha256, &check.key, body)),
            &sig[7..]
        );
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], Result<(), AuthError>);
        let cases: &[Case] = &[
            (&[("x-hub-signature-256", sig)], body, Ok(())),
            // Uppercase hex is the same signature.
            (
                &[(
                    "x-hub-signature-256",
                    &sig.to_uppercase().replace("SHA256=", "sha256="),
                )],
                body,
                Ok(()),
            ),
            // Another body.
            (
                &[("x-hub-signature-256", sig)],
                b"Hello, World?",
                Err(AuthError::BadSignature("x-hub-signature-256".into())),
            ),
            // Missing.
            (
                &[],
                body,
                Err(AuthError::MissingSignature("x-hub-signature-256".into())),
            ),
            // Wrong algorithm (GitHub's legacy SHA-1 header value).
            (
                &[("x-hub-signature-256", "sha1=0123abcd")],
                body,
                Err(AuthError::WrongAlgorithm {
                    header: "x-hub-signature-256".into(),
                    found: "sha1".into(),
                    expected: "sha256".into(),
                }),
            ),
            // Not hex, truncated, no prefix at all.
            (
                &[("x-hub-signature-256", "sha256=zz")],
                body,
                Err(AuthError::MalformedSignature("x-hub-signature-256".into())),
            ),
            (
                &[("x-hub-signature-256", &sig[..sig.len() - 2])],
                body,
                Err(AuthError::BadSignature("x-hub-signature-256".into())),
            ),
            (
                &[("x-hub-signature-256", &sig[7..])],
                body,
                Err(AuthError::MalformedSignature("x-hub-signature-256".into())),
            ),
        ];
        for (h, body, want) in cases {
            assert_eq!(&verify_hmac(&check, &headers(h), body), want, "{h:?}");
        }
    }

    #[test]
    fn generic_form_sha512_base64() {
        let check = HmacCheck {
            header: HeaderName::from_static("x-signature"),
            algorithm: HmacAlgorithm::Sha512,
            prefix: String::new(),
            encoding: SignatureEncoding::Base64,
            key: b"k3y".to_vec(),
        };
        let body = br#"{"temp":21.5}"#;
        let good = base64::engine::general_purpose::STANDARD.encode(sign(
            HmacAlgorithm::Sha512,
            b"k3y",
            body,
        ));
        assert_eq!(
            verify_hmac(&check, &headers(&[("x-signature", &good)]), body),
            Ok(())
        );
        // A SHA-256 signature of the same body, same key: wrong algorithm, no match.
        let sha256 = base64::engine::general_purpose::STANDARD.encode(sign(
            HmacAlgorithm::Sha256,
            b"k3y",
            body,
        ));
        assert_eq!(
            verify_hmac(&check, &headers(&[("x-signature", &sha256)]), body),
            Err(AuthError::BadSignature("x-signature".into()))
        );
        let other_key = base64::engine::general_purpose::STANDARD.encode(sign(
            HmacAlgorithm::Sha512,
            b"key",
            body,
        ));
        assert!(verify_hmac(&check, &headers(&[("x-signature", &other_key)]), body).is_err());
        assert_eq!(
            verify_hmac(&check, &headers(&[("x-signature", "***")]), body),
            Err(AuthError::MalformedSignature("x-signature".into()))
        );
    }

    #[test]
    fn basic_and_bearer() {
        let basic = |user: &str, pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
            )
        };
        let plan = AuthPlan {
            basic: Some(("ci".into(), b"s3cret".to_vec())),
            ..AuthPlan::default()
        };
        let check = |plan: &AuthPlan, auth: Option<&str>| {
            let h = auth.map_or_else(HeaderMap::new, |a| headers(&[("authorization", a)]));
            verify_credentials(plan, &h)
        };
        assert_eq!(check(&plan, Some(&basic("ci", "s3cret"))), Ok(()));
        assert_eq!(
            check(&plan, Some(&basic("ci", "wrong"))),
            Err(AuthError::BadCredentials("basic"))
        );
        assert_eq!(
            check(&plan, Some(&basic("root", "s3cret"))),
            Err(AuthError::BadCredentials("basic"))
        );
        assert_eq!(
            check(&plan, None),
            Err(AuthError::MissingCredentials("basic"))
        );
        assert_eq!(
            check(&plan, None).unwrap_err().challenge(),
            Some("Basic realm=\"cebus\"")
        );
        let plan = AuthPlan {
            bearer: Some(b"tok-123".to_vec()),
            ..AuthPlan::default()
        };
        assert_eq!(check(&plan, Some("Bearer tok-123")), Ok(()));
        assert_eq!(check(&plan, Some("bearer tok-123")), Ok(()));
        assert_eq!(
            check(&plan, Some("Bearer tok-124")),
            Err(AuthError::BadCredentials("bearer"))
        );
        assert_eq!(
            check(&plan, None),
            Err(AuthError::MissingCredentials("bearer"))
        );
        assert_eq!(check(&AuthPlan::default(), None), Ok(()));
        // Debug never shows secrets.
        let shown = format!(
            "{:?}",
            AuthPlan {
                hmac: Some(github("hunter2")),
                basic: Some(("ci".into(), b"s3cret".to_vec())),
                bearer: Some(b"tok-123".to_vec()),
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret") && !shown.contains("tok"),
            "{shown}"
        );
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00ffA0"), Some(vec![0, 255, 160]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(encode_hex(&[0, 255, 160]), "00ffa0");
    }
}
