//! Running a manifest: the node [`Registry`] (built-ins plus types registered at run time, e.g.
//! JS nodes) and the [`Pipeline`] that pushes frames through the graph.
//!
//! `execute` hands the frame to every `Input` node, then runs each node in execution order on
//! the frames that reached it. A frame a node emits goes to every node it connects to (fan-out;
//! a node with several inputs sees each of their frames, fan-in). What `Output` nodes emit comes
//! out of the pipeline, as do every node's events, tagged with the node id. A node that fails
//! yields an error output with its id; the other frames and later calls carry on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use super::manifest::{Manifest, NodeSpec};
use super::mixer::AudioMixer;
use super::nodes::{builtin_type, Frame, Gain, Node, NodeEvent, NodeOutput, Passthrough};
use super::resample::Resample;
use super::vad::{VadConfig, VoiceActivityDetection};
use super::video_scale::VideoScale;
use crate::error::{Error, Result};

/// Builds a node from its manifest entry.
pub type NodeFactory = Arc<dyn Fn(&NodeSpec) -> Result<Box<dyn Node>> + Send + Sync>;

/// A built-in node for `spec`, or `None` if its type is not built in.
pub fn build_builtin(spec: &NodeSpec) -> Option<Result<Box<dyn Node>>> {
    let p = &spec.params;
    let node: Result<Box<dyn Node>> = match spec.node_type.as_str() {
        "Input" | "Output" | "Passthrough" => Ok(Box::new(Passthrough)),
        "Gain" => Gain::from_params(p).map(|n| Box::new(n) as Box<dyn Node>),
        "Resample" => Resample::from_params(p).map(|n| Box::new(n) as Box<dyn Node>),
        "VoiceActivityDetection" => Ok(Box::new(VoiceActivityDetection::new(
            VadConfig::from_params(p),
        ))),
        "AudioMixer" => Ok(Box::new(AudioMixer::from_params(p))),
        "VideoScale" => VideoScale::from_params(p).map(|n| Box::new(n) as Box<dyn Node>),
        _ => return None,
    };
    Some(node)
}

/// Node types beyond the built-ins, by name.
#[derive(Clone, Default)]
pub struct Registry {
    custom: BTreeMap<String, NodeFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) a custom node type. [`Error::InvalidConfig`] for an empty name or the
    /// name of a built-in type.
    pub fn register<F>(&mut self, name: impl Into<String>, factory: F) -> Result<()>
    where
        F: Fn(&NodeSpec) -> Result<Box<dyn Node>> + Send + Sync + 'static,
    {
        let name = name.into();
        if name.trim().is_empty() {
            return Err(Error::InvalidConfig("node type name is empty".into()));
        }
        if builtin_type(&name).is_some() {
            return Err(Error::InvalidConfig(format!(
                "node type '{name}' is built in and cannot be replaced"
            )));
        }
        self.custom.insert(name, Arc::new(factory));
        Ok(())
    }

    /// Removes a custom type; returns whether it was registered.
    pub fn unregister(&mut self, name: &str) -> bool {
        self.custom.remove(name).is_some()
    }

    /// Names of the registered custom types (for [`Manifest::validate`]).
    pub fn custom_types(&self) -> BTreeSet<String> {
        self.custom.keys().cloned().collect()
    }

    /// Builds the node for `spec`: built-in first, then a registered factory.
    pub fn build(&self, spec: &NodeSpec) -> Result<Box<dyn Node>> {
        if let Some(node) = build_builtin(spec) {
            return node;
        }
        match self.custom.get(&spec.node_type) {
            Some(factory) => factory(spec),
            None => Err(Error::InvalidManifest(format!(
                "node '{}': unknown node_type '{}'",
                spec.id, spec.node_type
            ))),
        }
    }
}

/// What one `execute` call produced, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineOutput {
    /// A frame that came out of the `Output` node `node_id`.
    Frame { node_id: String, frame: Frame },
    /// An event the node `node_id` reported.
    Event { node_id: String, event: NodeEvent },
    /// The node `node_id` failed on a frame (that frame went no further along its path).
    Error { node_id: String, error: Error },
}

/// A validated manifest with its nodes built, ready to run frames.
pub struct Pipeline {
    manifest: Manifest,
    /// Node indices (manifest order) in execution order.
    order: Vec<usize>,
    nodes: Vec<Box<dyn Node>>,
    succ: Vec<Vec<usize>>,
    inputs: Vec<usize>,
    is_output: Vec<bool>,
}

impl fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pipeline")
            .field("order", &self.execution_order())
            .finish()
    }
}

impl Pipeline {
    /// Validates `manifest` (custom types from `registry`) and builds every node.
    /// [`Error::InvalidManifest`] if it is invalid or a node cannot be built (naming the node).
    pub fn new(manifest: Manifest, registry: &Registry) -> Result<Self> {
        manifest.validate(&registry.custom_types())?;
        let order = manifest.execution_order()?;
        let nodes = manifest
            .nodes
            .iter()
            .map(|spec| {
                registry.build(spec).map_err(|e| match e {
                    Error::InvalidManifest(m) => Error::InvalidManifest(m),
                    other => Error::InvalidManifest(format!("node '{}': {other}", spec.id)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let n = manifest.nodes.len();
        let mut succ = vec![Vec::new(); n];
        for e in &manifest.connections {
            let (a, b) = (
                manifest.node_index(&e.from).expect("validated"),
                manifest.node_index(&e.to).expect("validated"),
            );
            succ[a].push(b);
        }
        let inputs = (0..n)
            .filter(|&i| manifest.nodes[i].node_type == "Input")
            .collect();
        let is_output = manifest
            .nodes
            .iter()
            .map(|s| s.node_type == "Output")
            .collect();
        Ok(Pipeline {
            manifest,
            order,
            nodes,
            succ,
            inputs,
            is_output,
        })
    }

    /// Parses, validates and builds in one go.
    pub fn from_text(text: &str, registry: &Registry) -> Result<Self> {
        Pipeline::new(Manifest::parse(text)?, registry)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Node ids in the order they run.
    pub fn execution_order(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|&i| self.manifest.nodes[i].id.as_str())
            .collect()
    }

    /// Ids of the `Input` nodes, in manifest order.
    pub fn input_ids(&self) -> Vec<&str> {
        self.inputs
            .iter()
            .map(|&i| self.manifest.nodes[i].id.as_str())
            .collect()
    }

    /// Runs `frame` through the graph from every `Input` node.
    pub fn execute(&mut self, frame: Frame) -> Vec<PipelineOutput> {
        let inputs = self.inputs.clone();
        self.run(&inputs, frame)
    }

    /// Runs `frame` from one `Input` node only. [`Error::InvalidData`] if `input_id` is not an
    /// `Input` node of this pipeline.
    pub fn execute_at(&mut self, input_id: &str, frame: Frame) -> Result<Vec<PipelineOutput>> {
        let i = self
            .inputs
            .iter()
            .copied()
            .find(|&i| self.manifest.nodes[i].id == input_id)
            .ok_or_else(|| Error::InvalidData(format!("no Input node '{input_id}'")))?;
        Ok(self.run(&[i], frame))
    }

    fn run(&mut self, starts: &[usize], frame: Frame) -> Vec<PipelineOutput> {
        let mut inbox: Vec<Vec<Frame>> = vec![Vec::new(); self.nodes.len()];
        if let Some((&last, rest)) = starts.split_last() {
            for &i in rest {
                inbox[i].push(frame.clone());
            }
            inbox[last].push(frame);
        }
        let mut results = Vec::new();
        for k in 0..self.order.len() {
            let i = self.order[k];
            for input in std::mem::take(&mut inbox[i]) {
                let outputs = match self.nodes[i].process(input) {
                    Ok(o) => o,
                    Err(error) => {
                        results.push(PipelineOutput::Error {
                            node_id: self.manifest.nodes[i].id.clone(),
                            error,
                        });
                        continue;
                    }
                };
                for out in outputs {
                    match out {
                        NodeOutput::Event(event) => results.push(PipelineOutput::Event {
                            node_id: self.manifest.nodes[i].id.clone(),
                            event,
                        }),
                        NodeOutput::Frame(f) => self.route(i, f, &mut inbox, &mut results),
                    }
                }
            }
        }
        results
    }

    /// Sends `frame` from node `i` to its successors and, from an `Output`, out.
    fn route(
        &self,
        i: usize,
        frame: Frame,
        inbox: &mut [Vec<Frame>],
        results: &mut Vec<PipelineOutput>,
    ) {
        let succ = &self.succ[i];
        if self.is_output[i] {
            let node_id = self.manifest.nodes[i].id.clone();
            if succ.is_empty() {
                results.push(PipelineOutput::Frame { node_id, frame });
                return;
            }
            results.push(PipelineOutput::Frame {
                node_id,
                frame: frame.clone(),
            });
        }
        if let Some((&last, rest)) = succ.split_last() {
            for &j in rest {
                inbox[j].push(frame.clone());
            }
            inbox[last].push(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::nodes::{AudioFrame, EventFrame};
    use serde_json::json;
    use std::sync::Mutex;

    fn audio(peer: &str, samples: Vec<f32>) -> Frame {
        Frame::Audio(AudioFrame {
            samples,
            sample_rate: 48_000,
            channels: 1,
            peer_id: Some(peer.into()),
            timestamp_us: 0,
        })
    }

    /// A custom node that logs its id on every frame and appends its tag to event frames.
    struct Tagger {
        id: String,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Node for Tagger {
        fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
            self.log.lock().unwrap().push(self.id.clone());
            Ok(vec![NodeOutput::Frame(match input {
                Frame::Event(mut e) => {
                    e.name.push_str(&format!(">{}", self.id));
                    Frame::Event(e)
                }
                other => other,
            })])
        }
    }

    fn tagging_registry(log: &Arc<Mutex<Vec<String>>>) -> Registry {
        let mut r = Registry::new();
        let log = log.clone();
        r.register("Tag", move |spec: &NodeSpec| {
            Ok(Box::new(Tagger {
                id: spec.id.clone(),
                log: log.clone(),
            }) as Box<dyn Node>)
        })
        .unwrap();
        r
    }

    fn event(name: &str) -> Frame {
        Frame::Event(EventFrame {
            name: name.into(),
            data: json!(null),
            peer_id: None,
        })
    }

    #[test]
    fn nodes_run_in_topological_order_with_fan_out_and_fan_in() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let reg = tagging_registry(&log);
        let text = "
nodes:
  - { id: out, node_type: Output }
  - { id: join, node_type: Tag }
  - { id: b, node_type: Tag }
  - { id: a, node_type: Tag }
  - { id: in, node_type: Input }
connections:
  - { from: in, to: a }
  - { from: in, to: b }
  - { from: a, to: join }
  - { from: b, to: join }
  - { from: join, to: out }
";
        let mut p = Pipeline::from_text(text, &reg).unwrap();
        assert_eq!(p.execution_order(), ["in", "b", "a", "join", "out"]);
        let out = p.execute(event("e"));
        // Fan-out to a and b, fan-in at join: two frames out, one per path.
        let names: Vec<_> = out
            .iter()
            .map(|o| match o {
                PipelineOutput::Frame {
                    node_id,
                    frame: Frame::Event(e),
                } => {
                    assert_eq!(node_id, "out");
                    e.name.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(names, ["e>b>join", "e>a>join"]);
        assert_eq!(*log.lock().unwrap(), ["b", "a", "join", "join"]);
    }

    #[test]
    fn a_failing_node_reports_an_error_and_the_pipeline_keeps_running() {
        let mut reg = Registry::new();
        struct FailOnNegative;
        impl Node for FailOnNegative {
            fn process(&mut self, input: Frame) -> Result<Vec<NodeOutput>> {
                match &input {
                    Frame::Audio(a) if a.samples.iter().any(|&s| s < 0.0) => {
                        Err(Error::InvalidData("negative sample".into()))
                    }
                    _ => Ok(vec![NodeOutput::Frame(input)]),
                }
            }
        }
        reg.register("Picky", |_: &NodeSpec| {
            Ok(Box::new(FailOnNegative) as Box<dyn Node>)
        })
        .unwrap();
        let text = "
nodes:
  - { id: in, node_type: Input }
  - { id: picky, node_type: Picky }
  - { id: out, node_type: Output }
  - { id: raw, node_type: Output }
connections:
  - { from: in, to: picky }
  - { from: picky, to: out }
  - { from: in, to: raw }
";
        let mut p = Pipeline::from_text(text, &reg).unwrap();
        let bad = p.execute(audio("a", vec![-0.5]));
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(
            bad.iter().any(|o| matches!(o,
            PipelineOutput::Error { node_id, error: Error::InvalidData(_) } if node_id == "picky"))
        );
        // The other branch still delivered.
        assert!(bad
            .iter()
            .any(|o| matches!(o, PipelineOutput::Frame { node_id, .. } if node_id == "raw")));
        // A later frame goes through both.
        let good = p.execute(audio("a", vec![0.5]));
        let outs: Vec<_> = good
            .iter()
            .map(|o| match o {
                PipelineOutput::Frame { node_id, .. } => node_id.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(outs, ["out", "raw"]);
    }

    #[test]
    fn gain_pipeline_changes_the_level_and_vad_events_carry_the_node_id() {
        let text = "
nodes:
  - { id: in, node_type: Input }
  - { id: quieter, node_type: Gain, params: { gain_db: -20 } }
  - { id: vad, node_type: VoiceActivityDetection, params: { threshold_db: -30, min_speech_ms: 20 } }
  - { id: out, node_type: Output }
connections:
  - { from: in, to: quieter }
  - { from: quieter, to: vad }
  - { from: vad, to: out }
";
        let mut p = Pipeline::from_text(text, &Registry::new()).unwrap();
        // 0.5 → 0.05 (−26 dBFS RMS for a square wave of ±0.05): above −30, speech.
        let square: Vec<f32> = (0..960)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        let out = p.execute(audio("alice", square));
        let frame = out.iter().find_map(|o| match o {
            PipelineOutput::Frame {
                frame: Frame::Audio(a),
                ..
            } => Some(a),
            _ => None,
        });
        let a = frame.expect("audio out");
        assert!(a.samples.iter().all(|s| (s.abs() - 0.05).abs() < 1e-6));
        let ev: Vec<_> = out
            .iter()
            .filter_map(|o| match o {
                PipelineOutput::Event { node_id, event } => Some((node_id.as_str(), event)),
                _ => None,
            })
            .collect();
        assert_eq!(ev.len(), 1, "{out:?}");
        assert_eq!(ev[0].0, "vad");
        assert_eq!(ev[0].1.name, "speech-start");
        assert_eq!(ev[0].1.data["peer_id"], "alice");
    }

    #[test]
    fn registry_guards_builtins_and_custom_types_must_be_registered() {
        let mut reg = Registry::new();
        let f = |_: &NodeSpec| Ok(Box::new(Passthrough) as Box<dyn Node>);
        assert!(matches!(
            reg.register("Gain", f),
            Err(Error::InvalidConfig(_))
        ));
        assert!(matches!(reg.register(" ", f), Err(Error::InvalidConfig(_))));
        let text = "nodes: [{id: in, node_type: Input}, {id: x, node_type: Echo}, {id: out, node_type: Output}]\nconnections: [{from: in, to: x}, {from: x, to: out}]";
        let e = Pipeline::from_text(text, &reg).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidManifest(m) if m.contains("node 'x'")),
            "{e}"
        );
        reg.register("Echo", f).unwrap();
        assert_eq!(reg.custom_types(), BTreeSet::from(["Echo".to_string()]));
        let mut p = Pipeline::from_text(text, &reg).unwrap();
        assert_eq!(p.execute(event("hi")).len(), 1);
        // A factory that fails names the node.
        reg.register("Echo", |_: &NodeSpec| {
            Err(Error::Internal("js side gone".into()))
        })
        .unwrap();
        let e = Pipeline::from_text(text, &reg).unwrap_err();
        assert!(e.to_string().contains("node 'x'") && e.to_string().contains("js side gone"));
        assert!(reg.unregister("Echo"));
        assert!(!reg.unregister("Echo"));
    }

    #[test]
    fn execute_at_picks_one_input() {
        let text = "
nodes:
  - { id: mic, node_type: Input }
  - { id: cam, node_type: Input }
  - { id: out, node_type: Output }
connections:
  - { from: mic, to: out }
  - { from: cam, to: out }
";
        let mut p = Pipeline::from_text(text, &Registry::new()).unwrap();
        assert_eq!(p.input_ids(), ["mic", "cam"]);
        assert_eq!(p.execute(event("x")).len(), 2);
        assert_eq!(p.execute_at("cam", event("x")).unwrap().len(), 1);
        assert!(matches!(
            p.execute_at("out", event("x")),
            Err(Error::InvalidData(_))
        ));
    }
}
