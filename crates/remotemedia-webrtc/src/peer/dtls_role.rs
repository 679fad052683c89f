//! The DTLS role (`a=setup`, RFC 8842) this side takes, and keeps for a connection's life.
//!
//! We answer a first offer `passive`: we become the DTLS server, and so the SCTP server, which
//! accepts the remote's INIT. As DTLS client, webrtc-rs's SCTP endpoint has no server
//! configuration and drops an incoming INIT ("refusing first packet due to empty
//! server_config") where RFC 4960 §5.2.1 expects an INIT ACK: a peer that opens SCTP itself
//! (libdatachannel/usrsctp, libwebrtc) then waits on retransmissions (issue 13, item 6). When
//! we offer, the remote picks (browsers answer `active`, making us the server too).
//!
//! Once the first exchange of a connection has fixed the role, every later answer of ours
//! must state the same one: webrtc-rs answers with its configured role whatever the
//! association's, and Chromium refuses a role change ("Failed to set SSL role for the
//! transport"). [`keep_role`] rewrites what we publish; the DTLS association itself is not
//! touched by a re-answer.
//!
//! Offers are `actpass` (JSEP, RFC 8829 §5.2.1); a first offer that insists on `passive` is
//! not supported (webrtc-rs answers with its configured role whatever the offer says).

/// Our role once decided: `active` (DTLS client) or `passive` (DTLS server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupRole {
    Active,
    Passive,
}

impl SetupRole {
    pub fn as_str(self) -> &'static str {
        match self {
            SetupRole::Active => "active",
            SetupRole::Passive => "passive",
        }
    }
}

/// The `a=setup` value of an SDP (the first one; JSEP bundles one transport).
pub fn setup_of(sdp: &str) -> Option<&str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix("a=setup:"))
        .map(str::trim)
}

/// Our role after the remote answered our offer with `answer_sdp`: the opposite of theirs.
pub fn role_from_remote_answer(answer_sdp: &str) -> Option<SetupRole> {
    match setup_of(answer_sdp)? {
        "active" => Some(SetupRole::Passive),
        "passive" => Some(SetupRole::Active),
        _ => None,
    }
}

/// Our role as an answer of ours states it.
pub fn role_of_our_answer(answer_sdp: &str) -> Option<SetupRole> {
    match setup_of(answer_sdp)? {
        "active" => Some(SetupRole::Active),
        "passive" => Some(SetupRole::Passive),
        _ => None,
    }
}

/// `answer_sdp` with every `a=setup` line stating `role` (line endings kept).
pub fn keep_role(answer_sdp: &str, role: SetupRole) -> String {
    let mut out = String::with_capacity(answer_sdp.len());
    for line in answer_sdp.split_inclusive('\n') {
        if line.starts_with("a=setup:") {
            let ending = &line[line.trim_end_matches(['\r', '\n']).len()..];
            out.push_str("a=setup:");
            out.push_str(role.as_str());
            out.push_str(ending);
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANSWER: &str = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=setup:passive\r\na=mid:0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=setup:passive\r\n";

    #[test]
    fn the_remote_answers_role_makes_ours_the_other() {
        assert_eq!(role_from_remote_answer(ANSWER), Some(SetupRole::Active));
        let active = ANSWER.replace("passive", "active");
        assert_eq!(role_from_remote_answer(&active), Some(SetupRole::Passive));
        assert_eq!(role_from_remote_answer("v=0\r\na=setup:actpass\r\n"), None);
        assert_eq!(role_from_remote_answer("v=0\r\n"), None);
    }

    #[test]
    fn a_later_answer_states_the_role_the_first_exchange_fixed() {
        let kept = keep_role(ANSWER, SetupRole::Active);
        assert_eq!(kept, ANSWER.replace("a=setup:passive", "a=setup:active"));
        assert_eq!(role_of_our_answer(&kept), Some(SetupRole::Active));
        // Nothing else changes, \n-only SDPs included.
        let lf = ANSWER.replace("\r\n", "\n");
        assert_eq!(keep_role(&lf, SetupRole::Passive), lf);
    }
}
