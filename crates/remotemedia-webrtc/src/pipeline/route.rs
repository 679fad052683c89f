//! Where a session sends what an `Output` node emits: its `route` param.
//!
//! - `sender` (default): to the member the frame is tagged with (a loopback returns a member's
//!   own media; a mixer tags each listener's mix with the listener, so each gets its own).
//! - `all`: to every member of the session (broadcast).
//! - `others`: to every member but the one the frame is tagged with.
//! - `peers`: to the members listed in the `peers` param (several).

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputRoute {
    #[default]
    Sender,
    All,
    Others,
    Peers(Vec<String>),
}

/// The `route` values an `Output` node accepts.
pub const ROUTES: [&str; 4] = ["sender", "all", "others", "peers"];

impl OutputRoute {
    /// From an `Output` node's params (validated by [`check_output_params`]).
    pub fn from_params(params: &Map<String, Value>) -> Self {
        match params.get("route").and_then(Value::as_str) {
            Some("all") => OutputRoute::All,
            Some("others") => OutputRoute::Others,
            Some("peers") => OutputRoute::Peers(
                params
                    .get("peers")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => OutputRoute::Sender,
        }
    }

    /// The members a frame tagged with `source` goes to, in `members` order; only members.
    pub fn recipients(&self, source: Option<&str>, members: &[String]) -> Vec<String> {
        members
            .iter()
            .filter(|m| match self {
                OutputRoute::Sender => Some(m.as_str()) == source,
                OutputRoute::All => true,
                OutputRoute::Others => Some(m.as_str()) != source,
                OutputRoute::Peers(list) => list.iter().any(|p| p == *m),
            })
            .cloned()
            .collect()
    }
}

/// The rule between `route` and `peers`: `peers` (a non-empty list of peer ids) exactly when
/// `route` is `peers`.
pub fn check_output_params(params: &Map<String, Value>) -> std::result::Result<(), String> {
    let route = params.get("route").and_then(Value::as_str);
    if let Some(r) = route {
        if !ROUTES.contains(&r) {
            return Err(format!(
                "param 'route' = '{r}' is not one of {}",
                ROUTES.join(", ")
            ));
        }
    }
    match (route == Some("peers"), params.get("peers")) {
        (true, None) => Err("route 'peers' needs param 'peers' (a list of peer ids)".into()),
        (false, Some(_)) => Err("param 'peers' goes with route: peers".into()),
        (true, Some(v)) => {
            let ids = v
                .as_array()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| "param 'peers' must be a non-empty list of peer ids".to_string())?;
            for id in ids {
                match id.as_str() {
                    Some(s) if crate::config::is_valid_peer_id(s) => {}
                    _ => return Err(format!("param 'peers' has an invalid peer id {id}")),
                }
            }
            Ok(())
        }
        (false, None) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn members() -> Vec<String> {
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn each_route_picks_its_members() {
        let m = members();
        let to = |r: OutputRoute, src| r.recipients(src, &m);
        assert_eq!(to(OutputRoute::Sender, Some("b")), ["b"]);
        assert!(
            to(OutputRoute::Sender, Some("x")).is_empty(),
            "not a member"
        );
        assert!(to(OutputRoute::Sender, None).is_empty());
        assert_eq!(to(OutputRoute::All, Some("b")), ["a", "b", "c"]);
        assert_eq!(to(OutputRoute::Others, Some("b")), ["a", "c"]);
        assert_eq!(to(OutputRoute::Others, None), ["a", "b", "c"]);
        let some = OutputRoute::Peers(vec!["c".into(), "a".into(), "gone".into()]);
        assert_eq!(to(some, Some("b")), ["a", "c"]);
    }

    #[test]
    fn params_give_the_route() {
        assert_eq!(OutputRoute::from_params(&Map::new()), OutputRoute::Sender);
        assert_eq!(
            OutputRoute::from_params(&params(json!({"route": "all"}))),
            OutputRoute::All
        );
        assert_eq!(
            OutputRoute::from_params(&params(json!({"route": "peers", "peers": ["a", "b"]}))),
            OutputRoute::Peers(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn bad_route_params_are_refused_with_the_reason() {
        let bad = [
            (json!({"route": "everyone"}), "not one of"),
            (json!({"route": "peers"}), "needs param 'peers'"),
            (
                json!({"route": "all", "peers": ["a"]}),
                "goes with route: peers",
            ),
            (json!({"route": "peers", "peers": []}), "non-empty list"),
            (json!({"route": "peers", "peers": "a"}), "non-empty list"),
            (
                json!({"route": "peers", "peers": ["ok", "bad id!"]}),
                "invalid peer id",
            ),
        ];
        for (p, why) in bad {
            let e = check_output_params(&params(p.clone())).unwrap_err();
            assert!(e.contains(why), "{p}: {e}");
        }
        for p in [
            json!({}),
            json!({"route": "sender"}),
            json!({"route": "peers", "peers": ["a"]}),
        ] {
            assert!(check_output_params(&params(p.clone())).is_ok(), "{p}");
        }
    }
}
