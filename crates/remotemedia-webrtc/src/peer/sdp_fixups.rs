//! What a remote description is given before webrtc-rs applies it, so that a valid SDP of
//! another stack does not trip it.
//!
//! [`with_default_msids`]: RFC 8830 makes `a=msid` optional, and werift omits it unless its
//! sender has a stream. Without it every remote track of webrtc-rs 0.21 has the track id "",
//! and its driver keys remote tracks by track id (`driver.rs`, OnTrack, the simulcast path):
//! the second such track never starts and its RTP goes to the first one (an audio track got
//! the video). Browsers give such a track a random id of their own (JSEP, RFC 8829 §5.10);
//! here the sending section gets `a=msid:- rm-<mid>`, unique per section, before its `a=ssrc`
//! lines (webrtc-rs reads attributes in order).

use std::borrow::Cow;

/// `sdp` with an `a=msid:- rm-<mid>` line in each audio/video section that sends
/// (sendrecv or sendonly, the default) and declares no msid (neither `a=msid:` nor an
/// `a=ssrc:<n> msid:` line). Unchanged (borrowed) when no section needs one.
pub fn with_default_msids(sdp: &str) -> Cow<'_, str> {
    let lines: Vec<&str> = sdp.split_inclusive('\n').collect();
    // Section starts (indices of m= lines) and the end of each.
    let starts: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].starts_with("m="))
        .collect();
    let mut inserts: Vec<(usize, String)> = Vec::new();
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(lines.len());
        let section = &lines[start..end];
        let media = section[0].trim_end();
        if !(media.starts_with("m=audio") || media.starts_with("m=video")) {
            continue;
        }
        // A rejected section (port 0) sends nothing.
        if media.split_whitespace().nth(1) == Some("0") {
            continue;
        }
        let attr = |l: &&str| l.trim_end().to_string();
        let attrs: Vec<String> = section[1..].iter().map(attr).collect();
        let has_msid = attrs.iter().any(|l| {
            l.starts_with("a=msid:") || (l.starts_with("a=ssrc:") && l.contains(" msid:"))
        });
        let sends = !attrs.iter().any(|l| l == "a=recvonly" || l == "a=inactive");
        if has_msid || !sends {
            continue;
        }
        let mid = attrs
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(str::to_string)
            .unwrap_or_else(|| n.to_string());
        let ending = if section[0].ends_with("\r\n") {
            "\r\n"
        } else {
            "\n"
        };
        // Before the section's first `a=ssrc` line: webrtc-rs gives each SSRC the msid read
        // so far in the section.
        let at = section
            .iter()
            .position(|l| l.starts_with("a=ssrc:"))
            .map_or(end, |i| start + i);
        inserts.push((at, format!("a=msid:- rm-{mid}{ending}")));
    }
    if inserts.is_empty() {
        return Cow::Borrowed(sdp);
    }
    let mut out = String::with_capacity(sdp.len() + inserts.len() * 24);
    let mut next = inserts.iter().peekable();
    for (i, line) in lines.iter().enumerate() {
        while let Some((at, text)) = next.peek() {
            if *at == i {
                out.push_str(text);
                next.next();
            } else {
                break;
            }
        }
        out.push_str(line);
    }
    for (_, text) in next {
        // A last section that does not end in a newline gets one first.
        if !out.ends_with('\n') {
            out.push_str("\r\n");
        }
        out.push_str(text);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_MSID: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendrecv\r\n\
        a=ssrc:11 cname:x\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:2\r\n";

    #[test]
    fn each_sending_section_without_msid_gets_its_own_track_id() {
        let out = with_default_msids(NO_MSID);
        assert!(
            out.contains("a=sendrecv\r\na=msid:- rm-0\r\na=ssrc:11 cname:x\r\nm=video"),
            "{out}"
        );
        assert!(
            out.contains("a=sendrecv\r\na=msid:- rm-1\r\nm=application"),
            "{out}"
        );
        assert_eq!(out.matches("a=msid:").count(), 2);
        // Applying it again changes nothing.
        assert!(matches!(with_default_msids(&out), Cow::Borrowed(_)));
    }

    #[test]
    fn sections_with_an_msid_or_not_sending_are_left_alone() {
        let with = NO_MSID
            .replace("a=mid:0\r\n", "a=mid:0\r\na=msid:s t\r\n")
            .replace("a=mid:1\r\na=sendrecv", "a=mid:1\r\na=recvonly");
        assert!(matches!(with_default_msids(&with), Cow::Borrowed(_)));
        let ssrc_msid = NO_MSID
            .replace("a=ssrc:11 cname:x", "a=ssrc:11 msid:s t")
            .replace("m=video 9", "m=video 0");
        assert!(matches!(with_default_msids(&ssrc_msid), Cow::Borrowed(_)));
    }

    #[test]
    fn a_last_section_without_a_final_newline_is_completed() {
        let sdp = "v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:a";
        assert_eq!(
            with_default_msids(sdp),
            "v=0\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\na=msid:- rm-a\r\n"
        );
    }
}
