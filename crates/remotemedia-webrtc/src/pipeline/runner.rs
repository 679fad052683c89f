//! Running a manifest: the node [`Registry`] (built-ins plus types registered at run time, e.g.
//! JS nodes) and the [`Pipeline`] that pushes frames through the graph.
//!
//! `execute` hands the frame to every `Input` node, then runs each node in execution order on
//! the frames that reached it. A frame a node emits goes to every node it connects to (fan-out;
//! a node with several inputs sees each of their frames, fan-in). What `Output` nodes emit comes
//! out of the pipeline, as do every node's events, tagged with the node id. A node that fails
//! yields an error output with its id; the other frames and later calls carry on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// A custom node type: Rust nodes built by a factory, or nodes the caller of the pipeline runs
/// itself (see [`Registry::register_external`]).
#[derive(Clone)]
enum Custom {
    Factory(NodeFactory),
    External,
}

/// Node types beyond the built-ins, by name.
#[derive(Clone, Default)]
pub struct Registry {
    custom: BTreeMap<String, Custom>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("custom", &self.custom.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Checks a custom type name: `[A-Za-z_][A-Za-z0-9_.-]*`, at most 64 bytes, not a built-in.
/// [`Error::InvalidConfig`] otherwise.
pub fn check_type_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::InvalidConfig("node type name is empty".into()));
    }
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !first_ok
        || name.len() > 64
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err(Error::InvalidConfig(format!(
            "node type name '{name}' is not valid: use letters, digits, '_', '.' or '-', \
             starting with a letter or '_' (at most 64)"
        )));
    }
    if builtin_type(name).is_some() {
        return Err(Error::InvalidConfig(format!(
            "node type '{name}' is built in and cannot be replaced"
        )));
    }
    Ok(())
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds (or replaces) a custom node type. [`Error::InvalidConfig`] for an invalid name (see
    /// [`check_type_name`]) or the name of a built-in type.
    pub fn register<F>(&mut self, name: impl Into<String>, factory: F) -> Result<()>
    where
        F: Fn(&NodeSpec) -> Result<Box<dyn Node>> + Send + Sync + 'static,
    {
        let name = name.into();
        check_type_name(&name)?;
        self.custom.insert(name, Custom::Factory(Arc::new(factory)));
        Ok(())
    }

    /// Adds (or replaces) an *external* node type: its nodes are not Rust code; whoever runs
    /// the pipeline runs them (the Node binding's JS nodes). [`Pipeline::begin`] /
    /// [`Pipeline::step`] hand each audio or video frame that reaches such a node to the caller
    /// as an [`ExternalCall`], and [`Pipeline::resume`] takes what it produced;
    /// [`Pipeline::execute_with`] does the same with a closure. Event frames pass such a node
    /// unchanged. Same name rules as [`Registry::register`].
    pub fn register_external(&mut self, name: impl Into<String>) -> Result<()> {
        let name = name.into();
        check_type_name(&name)?;
        self.custom.insert(name, Custom::External);
        Ok(())
    }

    /// Whether `name` is a registered external type.
    pub fn is_external(&self, name: &str) -> bool {
        matches!(self.custom.get(name), Some(Custom::External))
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
    /// [`Error::InvalidManifest`] for an unknown type; [`Error::InvalidConfig`] for an external
    /// type (it has no Rust node; [`Pipeline::new`] handles those itself).
    pub fn build(&self, spec: &NodeSpec) -> Result<Box<dyn Node>> {
        if let Some(node) = build_builtin(spec) {
            return node;
        }
        match self.custom.get(&spec.node_type) {
            Some(Custom::Factory(factory)) => factory(spec),
            Some(Custom::External) => Err(Error::InvalidConfig(format!(
                "node '{}': type '{}' is external and is run by the pipeline's caller",
                spec.id, spec.node_type
            ))),
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

/// A frame that reached an external node: the caller runs the node on it and hands the result
/// to [`Pipeline::resume`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalCall {
    pub node_id: String,
    pub node_type: String,
    /// An audio or video frame (event frames pass external nodes unchanged).
    pub frame: Frame,
}

/// Where [`Pipeline::step`] stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// An external node has a frame to process; call [`Pipeline::resume`] next.
    Call(ExternalCall),
    /// The frame has gone all the way through.
    Done,
}

/// One frame on its way through a [`Pipeline`] (from [`Pipeline::begin`]): the frames waiting
/// at each node, where the walk is, and the outputs not yet taken.
#[derive(Debug)]
pub struct Run {
    inbox: Vec<VecDeque<Frame>>,
    /// Position in the execution order.
    k: usize,
    outputs: Vec<PipelineOutput>,
    /// The external node waiting for [`Pipeline::resume`].
    pending: Option<usize>,
    /// Frame hand-overs (node to node) this run may still make ([`MAX_FRAMES_PER_RUN`]).
    budget: usize,
    /// Whether the run has already reported running out of `budget`.
    over_budget: bool,
}

/// Most node-to-node frame hand-overs one input frame may cause at run time. Validation bounds
/// the paths ([`super::manifest::MAX_PATHS`]), but a node may emit several frames per input;
/// past this bound further frames are dropped with one [`Error::InvalidData`] output.
pub const MAX_FRAMES_PER_RUN: usize = 4096;

impl Run {
    /// The outputs produced since the last call (in order).
    pub fn take_outputs(&mut self) -> Vec<PipelineOutput> {
        std::mem::take(&mut self.outputs)
    }

    /// Whether an external node is waiting for [`Pipeline::resume`].
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }
}

enum Slot {
    Native(Box<dyn Node>),
    External,
}

/// A validated manifest with its nodes built, ready to run frames.
pub struct Pipeline {
    manifest: Manifest,
    /// Node indices (manifest order) in execution order.
    order: Vec<usize>,
    nodes: Vec<Slot>,
    succ: Vec<Vec<usize>>,
    inputs: Vec<usize>,
    is_output: Vec<bool>,
    /// Where a session sends each `Output` node's frames, by node id.
    routes: Arc<BTreeMap<String, super::route::OutputRoute>>,
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
                if registry.is_external(&spec.node_type) {
                    return Ok(Slot::External);
                }
                registry.build(spec).map(Slot::Native).map_err(|e| match e {
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
        let routes = Arc::new(
            manifest
                .nodes
                .iter()
                .filter(|s| s.node_type == "Output")
                .map(|s| {
                    (
                        s.id.clone(),
                        super::route::OutputRoute::from_params(&s.params),
                    )
                })
                .collect(),
        );
        Ok(Pipeline {
            manifest,
            order,
            nodes,
            succ,
            inputs,
            is_output,
            routes,
        })
    }

    /// Parses, validates and builds in one go.
    pub fn from_text(text: &str, registry: &Registry) -> Result<Self> {
        Pipeline::new(Manifest::parse(text)?, registry)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Where a session sends each `Output` node's frames, by node id.
    pub fn output_routes(&self) -> Arc<BTreeMap<String, super::route::OutputRoute>> {
        self.routes.clone()
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

    /// Ids of the nodes of an external type (run by the caller), in manifest order.
    pub fn external_ids(&self) -> Vec<&str> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::External))
            .map(|(i, _)| self.manifest.nodes[i].id.as_str())
            .collect()
    }

    /// Runs `frame` through the graph from every `Input` node. A frame that reaches an external
    /// node gives an [`Error::InvalidConfig`] output for it (nothing here can run it: use
    /// [`Pipeline::execute_with`] or [`Pipeline::step`]).
    pub fn execute(&mut self, frame: Frame) -> Vec<PipelineOutput> {
        self.execute_with(frame, no_host)
    }

    /// Runs `frame` from one `Input` node only. [`Error::InvalidData`] if `input_id` is not an
    /// `Input` node of this pipeline.
    pub fn execute_at(&mut self, input_id: &str, frame: Frame) -> Result<Vec<PipelineOutput>> {
        let mut run = self.begin_at(input_id, frame)?;
        Ok(self.finish(&mut run, &mut no_host))
    }

    /// Runs `frame` from every `Input` node, calling `host` for each frame that reaches an
    /// external node; its `Err` becomes an error output of that node.
    pub fn execute_with<F>(&mut self, frame: Frame, mut host: F) -> Vec<PipelineOutput>
    where
        F: FnMut(&ExternalCall) -> Result<Vec<NodeOutput>>,
    {
        let mut run = self.begin(frame);
        self.finish(&mut run, &mut host)
    }

    fn finish(
        &mut self,
        run: &mut Run,
        host: &mut dyn FnMut(&ExternalCall) -> Result<Vec<NodeOutput>>,
    ) -> Vec<PipelineOutput> {
        let mut all = Vec::new();
        loop {
            let step = self.step(run);
            all.extend(run.take_outputs());
            match step {
                Ok(Step::Call(call)) => {
                    let result = host(&call);
                    // `run` came from this pipeline and waits: resume cannot fail.
                    let _ = self.resume(run, result);
                }
                Ok(Step::Done) | Err(_) => return all,
            }
        }
    }

    /// Starts `frame` on its way from every `Input` node; drive it with [`Pipeline::step`].
    pub fn begin(&self, frame: Frame) -> Run {
        let starts = self.inputs.clone();
        self.begin_from(&starts, frame)
    }

    /// Like [`Pipeline::begin`], from one `Input` node. [`Error::InvalidData`] if `input_id`
    /// is not an `Input` node of this pipeline.
    pub fn begin_at(&self, input_id: &str, frame: Frame) -> Result<Run> {
        let i = self
            .inputs
            .iter()
            .copied()
            .find(|&i| self.manifest.nodes[i].id == input_id)
            .ok_or_else(|| Error::InvalidData(format!("no Input node '{input_id}'")))?;
        Ok(self.begin_from(&[i], frame))
    }

    fn begin_from(&self, starts: &[usize], frame: Frame) -> Run {
        let mut inbox: Vec<VecDeque<Frame>> = vec![VecDeque::new(); self.nodes.len()];
        if let Some((&last, rest)) = starts.split_last() {
            for &i in rest {
                inbox[i].push_back(frame.clone());
            }
            inbox[last].push_back(frame);
        }
        Run {
            inbox,
            k: 0,
            outputs: Vec::new(),
            pending: None,
            budget: MAX_FRAMES_PER_RUN,
            over_budget: false,
        }
    }

    fn check_run(&self, run: &Run) -> Result<()> {
        if run.inbox.len() != self.nodes.len() || run.k > self.order.len() {
            return Err(Error::InvalidData(
                "this run belongs to another pipeline".into(),
            ));
        }
        Ok(())
    }

    /// Runs nodes until an external node has a frame to process ([`Step::Call`]) or the frame
    /// has gone all the way through ([`Step::Done`]). Outputs so far are in
    /// [`Run::take_outputs`]. [`Error::InvalidData`] if the run waits for
    /// [`Pipeline::resume`] or is not from this pipeline.
    pub fn step(&mut self, run: &mut Run) -> Result<Step> {
        self.check_run(run)?;
        if let Some(i) = run.pending {
            return Err(Error::InvalidData(format!(
                "node '{}' is waiting for resume",
                self.manifest.nodes[i].id
            )));
        }
        while run.k < self.order.len() {
            let i = self.order[run.k];
            while let Some(input) = run.inbox[i].pop_front() {
                if matches!(self.nodes[i], Slot::External) {
                    if matches!(input, Frame::Event(_)) {
                        self.route(i, input, run);
                        continue;
                    }
                    run.pending = Some(i);
                    let spec = &self.manifest.nodes[i];
                    return Ok(Step::Call(ExternalCall {
                        node_id: spec.id.clone(),
                        node_type: spec.node_type.clone(),
                        frame: input,
                    }));
                }
                if let Slot::Native(node) = &mut self.nodes[i] {
                    let result = node.process(input);
                    self.deliver(i, result, run);
                }
            }
            run.k += 1;
        }
        Ok(Step::Done)
    }

    /// Hands the waiting external node's result to the run: its frames go on along the graph,
    /// its events and an `Err` become outputs tagged with the node id. Continue with
    /// [`Pipeline::step`]. [`Error::InvalidData`] if nothing is waiting.
    pub fn resume(&mut self, run: &mut Run, result: Result<Vec<NodeOutput>>) -> Result<()> {
        self.check_run(run)?;
        let i = run
            .pending
            .take()
            .ok_or_else(|| Error::InvalidData("no node is waiting for resume".into()))?;
        self.deliver(i, result, run);
        Ok(())
    }

    /// What node `i` produced on one frame: frames along the graph, events and errors out.
    fn deliver(&self, i: usize, result: Result<Vec<NodeOutput>>, run: &mut Run) {
        let outputs = match result {
            Ok(o) => o,
            Err(error) => {
                run.outputs.push(PipelineOutput::Error {
                    node_id: self.manifest.nodes[i].id.clone(),
                    error,
                });
                return;
            }
        };
        for out in outputs {
            match out {
                NodeOutput::Event(event) => run.outputs.push(PipelineOutput::Event {
                    node_id: self.manifest.nodes[i].id.clone(),
                    event,
                }),
                NodeOutput::Frame(f) => self.route(i, f, run),
            }
        }
    }

    /// Sends `frame` from node `i` to its successors and, from an `Output`, out.
    fn route(&self, i: usize, frame: Frame, run: &mut Run) {
        let succ = &self.succ[i];
        if self.is_output[i] {
            let node_id = self.manifest.nodes[i].id.clone();
            if succ.is_empty() {
                run.outputs.push(PipelineOutput::Frame { node_id, frame });
                return;
            }
            run.outputs.push(PipelineOutput::Frame {
                node_id,
                frame: frame.clone(),
            });
        }
        if succ.len() > run.budget {
            run.budget = 0;
            if !run.over_budget {
                run.over_budget = true;
                run.outputs.push(PipelineOutput::Error {
                    node_id: self.manifest.nodes[i].id.clone(),
                    error: Error::InvalidData(format!(
                        "one input frame made more than {MAX_FRAMES_PER_RUN} frames; the rest of this frame's copies are dropped"
                    )),
                });
            }
            return;
        }
        run.budget -= succ.len();
        if let Some((&last, rest)) = succ.split_last() {
            for &j in rest {
                run.inbox[j].push_back(frame.clone());
            }
            run.inbox[last].push_back(frame);
        }
    }
}

/// The host of plain `execute`: it cannot run external nodes.
fn no_host(call: &ExternalCall) -> Result<Vec<NodeOutput>> {
    Err(Error::InvalidConfig(format!(
        "node '{}' ({}) is an external node (e.g. a JS node) and this caller cannot run it",
        call.node_id, call.node_type
    )))
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

    const EXT: &str = "
nodes:
  - { id: in, node_type: Input }
  - { id: half, node_type: Gain, params: { gain: 0.5 } }
  - { id: js, node_type: Doubler, params: { by: 3 } }
  - { id: out, node_type: Output }
connections:
  - { from: in, to: half }
  - { from: half, to: js }
  - { from: js, to: out }
";

    fn ext_registry() -> Registry {
        let mut reg = Registry::new();
        reg.register_external("Doubler").unwrap();
        reg
    }

    #[test]
    fn type_names_are_checked_for_factories_and_external_types() {
        for ok in ["MyNode", "_x", "a.b-c_9"] {
            check_type_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let long = "x".repeat(65);
        for bad in [
            "",
            " ",
            "9lives",
            "my node",
            "a/b",
            "Gain",
            "Input",
            long.as_str(),
        ] {
            let e = check_type_name(bad).unwrap_err();
            assert_eq!(e.code(), "ERR_INVALID_CONFIG", "{bad:?}");
        }
        let mut reg = Registry::new();
        assert!(matches!(
            reg.register_external("VoiceActivityDetection"),
            Err(Error::InvalidConfig(m)) if m.contains("built in")
        ));
        assert!(reg.register_external("has space").is_err());
        reg.register_external("Doubler").unwrap();
        assert!(reg.is_external("Doubler") && !reg.is_external("Gain"));
        // Built as a Rust node it is refused; a pipeline takes it as an external slot.
        let spec = NodeSpec {
            id: "js".into(),
            node_type: "Doubler".into(),
            params: Default::default(),
        };
        assert!(matches!(reg.build(&spec), Err(Error::InvalidConfig(_))));
        let p = Pipeline::from_text(EXT, &reg).unwrap();
        assert_eq!(p.external_ids(), ["js"]);
        // Unknown types are still refused, naming the node.
        let e = Pipeline::from_text(EXT, &Registry::new()).unwrap_err();
        assert!(
            matches!(&e, Error::InvalidManifest(m) if m.contains("node 'js'") && m.contains("Doubler")),
            "{e}"
        );
    }

    #[test]
    fn step_hands_external_nodes_their_frames_and_resume_carries_on() {
        let mut p = Pipeline::from_text(EXT, &ext_registry()).unwrap();
        let mut run = p.begin(audio("alice", vec![0.2, -0.4]));
        let Step::Call(call) = p.step(&mut run).unwrap() else {
            panic!("no call")
        };
        assert_eq!(
            (call.node_id.as_str(), call.node_type.as_str()),
            ("js", "Doubler")
        );
        // The external node sees the frame after the Gain node.
        let Frame::Audio(a) = &call.frame else {
            panic!("{call:?}")
        };
        assert_eq!(a.samples, [0.1, -0.2]);
        assert_eq!(a.peer_id.as_deref(), Some("alice"));
        assert!(run.take_outputs().is_empty());
        assert!(run.is_waiting());
        // Stepping again before resume is refused, and does not lose the call.
        assert!(matches!(p.step(&mut run), Err(Error::InvalidData(_))));
        let mut out = a.clone();
        out.samples = out.samples.iter().map(|s| s * 3.0).collect();
        p.resume(
            &mut run,
            Ok(vec![
                NodeOutput::Event(NodeEvent {
                    name: "seen".into(),
                    data: json!({ "n": 2 }),
                }),
                NodeOutput::Frame(Frame::Audio(out.clone())),
            ]),
        )
        .unwrap();
        assert_eq!(p.step(&mut run).unwrap(), Step::Done);
        let outs = run.take_outputs();
        assert_eq!(
            outs,
            [
                PipelineOutput::Event {
                    node_id: "js".into(),
                    event: NodeEvent {
                        name: "seen".into(),
                        data: json!({ "n": 2 })
                    }
                },
                PipelineOutput::Frame {
                    node_id: "out".into(),
                    frame: Frame::Audio(out)
                },
            ]
        );
        // Nothing waits any more.
        assert!(matches!(
            p.resume(&mut run, Ok(vec![])),
            Err(Error::InvalidData(_))
        ));
        // A run of another pipeline is refused rather than indexing out of bounds.
        let mut other = Pipeline::from_text(
            "nodes: [{id: in, node_type: Input}, {id: out, node_type: Output}]\nconnections: [{from: in, to: out}]",
            &Registry::new(),
        )
        .unwrap();
        let mut run = p.begin(audio("a", vec![0.0]));
        assert!(matches!(other.step(&mut run), Err(Error::InvalidData(_))));
    }

    #[test]
    fn external_errors_are_outputs_and_later_frames_go_through() {
        let mut p = Pipeline::from_text(EXT, &ext_registry()).unwrap();
        let mut calls = 0;
        let mut host = |c: &ExternalCall| -> Result<Vec<NodeOutput>> {
            calls += 1;
            match &c.frame {
                Frame::Audio(a) if a.samples[0] < 0.0 => Err(Error::InvalidData("negative".into())),
                f => Ok(vec![NodeOutput::Frame(f.clone())]),
            }
        };
        let bad = p.execute_with(audio("a", vec![-1.0]), &mut host);
        assert!(
            matches!(bad.as_slice(), [PipelineOutput::Error { node_id, error: Error::InvalidData(m) }] if node_id == "js" && m == "negative"),
            "{bad:?}"
        );
        let good = p.execute_with(audio("a", vec![1.0]), &mut host);
        assert!(
            matches!(good.as_slice(), [PipelineOutput::Frame { node_id, frame: Frame::Audio(a) }] if node_id == "out" && a.samples == [0.5]),
            "{good:?}"
        );
        // Dropping (no outputs) is allowed.
        let none = p.execute_with(audio("a", vec![1.0]), |_: &ExternalCall| Ok(vec![]));
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(calls, 2);
    }

    #[test]
    fn plain_execute_reports_external_nodes_and_event_frames_pass_them() {
        let mut p = Pipeline::from_text(EXT, &ext_registry()).unwrap();
        let out = p.execute(audio("a", vec![1.0]));
        assert!(
            matches!(out.as_slice(), [PipelineOutput::Error { node_id, error: Error::InvalidConfig(m) }] if node_id == "js" && m.contains("external")),
            "{out:?}"
        );
        // An event frame is not handed to the host: it passes the external node unchanged.
        let out = p.execute_with(event("peer-left"), |c: &ExternalCall| {
            panic!("called for {c:?}")
        });
        assert!(
            matches!(out.as_slice(), [PipelineOutput::Frame { frame: Frame::Event(e), .. }] if e.name == "peer-left"),
            "{out:?}"
        );
    }

    #[test]
    fn fan_out_to_two_external_nodes_calls_each_in_order() {
        let mut reg = ext_registry();
        reg.register_external("Other").unwrap();
        let text = "
nodes:
  - { id: in, node_type: Input }
  - { id: a, node_type: Doubler }
  - { id: b, node_type: Other }
  - { id: out, node_type: Output }
connections:
  - { from: in, to: a }
  - { from: in, to: b }
  - { from: a, to: out }
  - { from: b, to: out }
";
        let mut p = Pipeline::from_text(text, &reg).unwrap();
        let mut seen = Vec::new();
        let out = p.execute_with(audio("a", vec![1.0]), |c: &ExternalCall| {
            seen.push(c.node_id.clone());
            // Two frames out of one: both reach the Output.
            Ok(vec![
                NodeOutput::Frame(c.frame.clone()),
                NodeOutput::Frame(c.frame.clone()),
            ])
        });
        assert_eq!(seen, ["a", "b"]);
        assert_eq!(out.len(), 4, "{out:?}");
    }
}
