//! Password authentication: SCRAM-SHA-256 (RFC 5802/7677, what libpq prefers) and md5, both
//! checked against the one configured password (the same secret as RESP AUTH and the HTTP
//! bearer token). Without a configured password, clients are trusted: the configuration
//! refuses non-loopback binds without one.

use std::cell::RefCell;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::codec::{encode, Reader};
use super::error::{sqlstate, PgError};

type HmacSha256 = Hmac<Sha256>;

/// PBKDF2 rounds; PostgreSQL's default scram_iterations.
pub const SCRAM_ITERATIONS: u32 = 4096;
const SCRAM_MECHANISM: &str = "SCRAM-SHA-256";
/// Longest SASL message we parse (client-first and client-final are ~100 bytes).
const SASL_BYTES_MAX: usize = 4096;

const AUTH_CLEARTEXT: i32 = 3;
const AUTH_MD5: i32 = 5;
const AUTH_SASL: i32 = 10;
const AUTH_SASL_CONTINUE: i32 = 11;
const AUTH_SASL_FINAL: i32 = 12;

/// Which password exchange a server asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ScramSha256,
    Md5,
    /// Plain password over the wire (only for tests of clients that cannot do better).
    Cleartext,
}

/// An exchange in progress.
pub enum AuthState {
    ScramFirst,
    ScramFinal {
        client_first_bare: String,
        server_first: String,
        nonce: String,
        gs2_header: String,
    },
    Md5 {
        salt: [u8; 4],
    },
    Cleartext,
}

/// What a step of the exchange decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// More messages to come; the challenge is in the output.
    Continue,
    /// The password was right; send AuthenticationOk next.
    Accepted,
}

fn failed(user: &str) -> PgError {
    PgError::fatal(
        sqlstate::INVALID_PASSWORD,
        format!("password authentication failed for user \"{user}\""),
    )
}

impl AuthState {
    /// Sends the authentication request for `method` and returns the state awaiting the answer.
    pub fn begin(method: AuthMethod, out: &mut Vec<u8>) -> AuthState {
        match method {
            AuthMethod::ScramSha256 => {
                let mut list = SCRAM_MECHANISM.as_bytes().to_vec();
                list.extend_from_slice(b"\0\0");
                encode::auth(out, AUTH_SASL, &list);
                AuthState::ScramFirst
            }
            AuthMethod::Md5 => {
                let salt: [u8; 4] = rand::random();
                encode::auth(out, AUTH_MD5, &salt);
                AuthState::Md5 { salt }
            }
            AuthMethod::Cleartext => {
                encode::auth(out, AUTH_CLEARTEXT, &[]);
                AuthState::Cleartext
            }
        }
    }

    /// Handles one 'p' message of the exchange.
    pub fn step(
        &mut self,
        body: &[u8],
        user: &str,
        password: &str,
        out: &mut Vec<u8>,
    ) -> Result<Step, PgError> {
        match self {
            AuthState::Cleartext => {
                let given = Reader::new(body).cstr()?;
                accept_if(ct_eq(given.as_bytes(), password.as_bytes()), user)
            }
            AuthState::Md5 { salt } => {
                let given = Reader::new(body).cstr()?;
                let expected = md5_response(user, password, salt);
                accept_if(ct_eq(given.as_bytes(), expected.as_bytes()), user)
            }
            AuthState::ScramFirst => {
                let (next, server_first) = scram_first(body, password)?;
                encode::auth(out, AUTH_SASL_CONTINUE, server_first.as_bytes());
                *self = next;
                Ok(Step::Continue)
            }
            AuthState::ScramFinal { .. } => {
                let signature = self.scram_final(body, user, password)?;
                let data = format!("v={}", B64.encode(signature));
                encode::auth(out, AUTH_SASL_FINAL, data.as_bytes());
                Ok(Step::Accepted)
            }
        }
    }

    fn scram_final(&self, body: &[u8], user: &str, password: &str) -> Result<[u8; 32], PgError> {
        let AuthState::ScramFinal {
            client_first_bare,
            server_first,
            nonce,
            gs2_header,
        } = self
        else {
            return Err(PgError::protocol("unexpected SASL response"));
        };
        let text = sasl_text(body)?;
        let (without_proof, proof_b64) = text
            .rsplit_once(",p=")
            .ok_or_else(|| PgError::protocol("malformed SCRAM message: no proof"))?;
        let channel = attribute(without_proof, 'c')?;
        let echoed = attribute(without_proof, 'r')?;
        if B64.decode(channel).ok().as_deref() != Some(gs2_header.as_bytes()) {
            return Err(PgError::protocol(
                "SCRAM channel binding check failed".to_string(),
            ));
        }
        if echoed != nonce {
            return Err(PgError::protocol("SCRAM nonce mismatch"));
        }
        let proof = B64
            .decode(proof_b64)
            .map_err(|_| PgError::protocol("malformed SCRAM message: invalid proof"))?;
        let salted = salted_password(password);
        let client_key = hmac(&salted.key, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac(&stored_key, auth_message.as_bytes());
        if proof.len() != 32 {
            return Err(failed(user));
        }
        let mut recovered_key = [0u8; 32];
        for (i, b) in recovered_key.iter_mut().enumerate() {
            *b = proof[i] ^ client_signature[i];
        }
        let recovered_stored: [u8; 32] = Sha256::digest(recovered_key).into();
        if !ct_eq(&recovered_stored, &stored_key) {
            return Err(failed(user));
        }
        let server_key = hmac(&salted.key, b"Server Key");
        Ok(hmac(&server_key, auth_message.as_bytes()))
    }
}

fn accept_if(ok: bool, user: &str) -> Result<Step, PgError> {
    if ok {
        Ok(Step::Accepted)
    } else {
        Err(failed(user))
    }
}

/// Parses SASLInitialResponse and builds server-first-message.
fn scram_first(body: &[u8], password: &str) -> Result<(AuthState, String), PgError> {
    let mut r = Reader::new(body);
    let mechanism = r.cstr()?;
    if mechanism != SCRAM_MECHANISM {
        return Err(PgError::fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!("client selected an invalid SASL authentication mechanism: {mechanism}"),
        ));
    }
    let len = r.i32()?;
    let data = usize::try_from(len)
        .map_err(|_| PgError::protocol("SASL initial response without data"))
        .and_then(|n| r.bytes(n))?;
    let text = sasl_text(data)?;
    // gs2-header: channel-binding flag, authzid, then the bare message.
    let mut parts = text.splitn(3, ',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(PgError::protocol("malformed SCRAM message: no gs2 header"));
    };
    if cbind.starts_with("p=") {
        return Err(PgError::protocol(
            "channel binding is not supported (no TLS): use SCRAM-SHA-256, not -PLUS",
        ));
    }
    if cbind != "n" && cbind != "y" {
        return Err(PgError::protocol("malformed SCRAM message: bad gs2 flag"));
    }
    let client_nonce = attribute(bare, 'r')?;
    let server_nonce: [u8; 18] = rand::random();
    let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
    let salted = salted_password(password);
    let server_first = format!(
        "r={nonce},s={},i={SCRAM_ITERATIONS}",
        B64.encode(salted.salt)
    );
    let state = AuthState::ScramFinal {
        client_first_bare: bare.to_string(),
        server_first: server_first.clone(),
        nonce,
        gs2_header: format!("{cbind},{authzid},"),
    };
    Ok((state, server_first))
}

fn sasl_text(data: &[u8]) -> Result<&str, PgError> {
    if data.len() > SASL_BYTES_MAX {
        return Err(PgError::protocol("SASL message too long"));
    }
    std::str::from_utf8(data).map_err(|_| PgError::protocol("SASL message is not UTF-8"))
}

/// The value of attribute `name` (`name=value`) in a comma-separated SCRAM message.
fn attribute(msg: &str, name: char) -> Result<&str, PgError> {
    msg.split(',')
        .find_map(|part| {
            let mut chars = part.chars();
            (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
        })
        .ok_or_else(|| PgError::protocol(format!("malformed SCRAM message: no '{name}='")))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    match HmacSha256::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().into()
        }
        Err(_) => [0u8; 32],
    }
}

#[derive(Clone)]
struct Salted {
    salt: [u8; 16],
    key: [u8; 32],
}

thread_local! {
    /// PBKDF2 of the password, computed once per shard thread with a random salt: it costs
    /// milliseconds, and PostgreSQL too keeps one salt per role rather than per login.
    static SALTED: RefCell<Option<(String, Salted)>> = const { RefCell::new(None) };
}

fn salted_password(password: &str) -> Salted {
    SALTED.with(|cell| {
        let mut cell = cell.borrow_mut();
        if let Some((p, s)) = cell.as_ref() {
            if p == password {
                return s.clone();
            }
        }
        let salt: [u8; 16] = rand::random();
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, SCRAM_ITERATIONS, &mut key);
        let s = Salted { salt, key };
        *cell = Some((password.to_string(), s.clone()));
        s
    })
}

/// What a client sends for md5: "md5" + md5hex(md5hex(password + user) + salt).
pub fn md5_response(user: &str, password: &str, salt: &[u8; 4]) -> String {
    let inner = hex(&md5::Md5::digest(format!("{password}{user}").as_bytes()));
    let mut outer_input = inner.into_bytes();
    outer_input.extend_from_slice(salt);
    format!("md5{}", hex(&md5::Md5::digest(&outer_input)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares without an early exit, so timing does not tell how much of a guess was right.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Plays the client side of SCRAM-SHA-256 the way libpq does.
    fn scram_client(password: &str, tamper: bool) -> Result<Step, PgError> {
        let mut out = Vec::new();
        let mut state = AuthState::begin(AuthMethod::ScramSha256, &mut out);
        assert!(String::from_utf8_lossy(&out).contains("SCRAM-SHA-256"));
        let client_first = "n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(client_first.len() as i32).to_be_bytes());
        body.extend_from_slice(client_first.as_bytes());
        out.clear();
        assert_eq!(
            state.step(&body, "u", "pw", &mut out).unwrap(),
            Step::Continue
        );
        let server_first = String::from_utf8(out[9..].to_vec()).unwrap();
        let nonce = attribute(&server_first, 'r').unwrap();
        assert!(nonce.starts_with("fyko+d2lbbFgONRv9qkxdawL"));
        let salt = B64.decode(attribute(&server_first, 's').unwrap()).unwrap();
        let iterations: u32 = attribute(&server_first, 'i').unwrap().parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r=fyko+d2lbbFgONRv9qkxdawL,{server_first},{without_proof}");
        let sig = hmac(&stored, auth_message.as_bytes());
        let mut proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
        if tamper {
            proof[0] ^= 1;
        }
        let final_msg = format!("{without_proof},p={}", B64.encode(&proof));
        out.clear();
        let step = state.step(final_msg.as_bytes(), "u", "pw", &mut out)?;
        let server_key = hmac(&salted, b"Server Key");
        let expected = format!(
            "v={}",
            B64.encode(hmac(&server_key, auth_message.as_bytes()))
        );
        assert_eq!(&out[9..], expected.as_bytes(), "server signature");
        Ok(step)
    }

    #[test]
    fn scram_accepts_the_right_password_and_proves_itself() {
        assert_eq!(scram_client("pw", false).unwrap(), Step::Accepted);
    }

    #[test]
    fn scram_rejects_a_wrong_password_or_proof() {
        assert_eq!(scram_client("wrong", false).unwrap_err().sqlstate, "28P01");
        assert_eq!(scram_client("pw", true).unwrap_err().sqlstate, "28P01");
    }

    #[test]
    fn md5_matches_postgres_formula() {
        let salt = [1u8, 2, 3, 4];
        let r = md5_response("bob", "secret", &salt);
        // Python: "md5" + md5(md5(b"secretbob").hexdigest().encode() + salt).hexdigest()
        assert_eq!(r, "md5f21dfe33ff3a9e03dbc3e008251fe5cc");
        let mut out = Vec::new();
        let mut state = AuthState::Md5 { salt };
        let mut body = r.clone().into_bytes();
        body.push(0);
        assert_eq!(
            state.step(&body, "bob", "secret", &mut out).unwrap(),
            Step::Accepted
        );
        let mut wrong = md5_response("bob", "nope", &salt).into_bytes();
        wrong.push(0);
        assert!(state.step(&wrong, "bob", "secret", &mut out).is_err());
    }

    #[test]
    fn channel_binding_plus_is_refused() {
        let mut state = AuthState::ScramFirst;
        let msg = "p=tls-server-end-point,,n=,r=abc";
        let mut body = b"SCRAM-SHA-256\0".to_vec();
        body.extend_from_slice(&(msg.len() as i32).to_be_bytes());
        body.extend_from_slice(msg.as_bytes());
        assert!(state.step(&body, "u", "pw", &mut Vec::new()).is_err());
    }
}
