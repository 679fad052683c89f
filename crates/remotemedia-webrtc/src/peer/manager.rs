//! The registry of a transport's peers: at most `max_peers`, one entry per remote peer id.

use super::connection::{Peer, PeerState};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct PeerManager {
    max_peers: usize,
    peers: Mutex<HashMap<String, Arc<Peer>>>,
}

impl PeerManager {
    pub fn new(max_peers: usize) -> Self {
        Self {
            max_peers,
            peers: Mutex::new(HashMap::new()),
        }
    }

    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    pub fn get(&self, id: &str) -> Option<Arc<Peer>> {
        self.peers.lock().unwrap().get(id).cloned()
    }

    /// Adds `peer` unless an entry for its id exists (then returns that one as `Err(Some)`)
    /// or the registry is full (`Err(None)`).
    pub fn insert(&self, peer: Arc<Peer>) -> std::result::Result<(), Option<Arc<Peer>>> {
        let mut map = self.peers.lock().unwrap();
        if let Some(existing) = map.get(peer.peer_id()) {
            return Err(Some(existing.clone()));
        }
        if map.len() >= self.max_peers {
            return Err(None);
        }
        map.insert(peer.peer_id().to_string(), peer);
        Ok(())
    }

    /// Puts `peer` in place of whatever entry its id has.
    pub fn replace(&self, peer: Arc<Peer>) -> Option<Arc<Peer>> {
        self.peers
            .lock()
            .unwrap()
            .insert(peer.peer_id().to_string(), peer)
    }

    pub fn check_capacity(&self, id: &str) -> Result<()> {
        let map = self.peers.lock().unwrap();
        if !map.contains_key(id) && map.len() >= self.max_peers {
            return Err(Error::MaxPeers(self.max_peers));
        }
        Ok(())
    }

    /// Removes the entry for `id` if it is `peer` (a replaced entry is left alone).
    pub fn remove_if(&self, id: &str, peer: &Arc<Peer>) -> bool {
        let mut map = self.peers.lock().unwrap();
        match map.get(id) {
            Some(p) if Arc::ptr_eq(p, peer) => {
                map.remove(id);
                true
            }
            _ => false,
        }
    }

    pub fn remove(&self, id: &str) -> Option<Arc<Peer>> {
        self.peers.lock().unwrap().remove(id)
    }

    pub fn drain(&self) -> Vec<Arc<Peer>> {
        self.peers.lock().unwrap().drain().map(|(_, p)| p).collect()
    }

    /// Ids of connected peers, sorted.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .peers
            .lock()
            .unwrap()
            .values()
            .filter(|p| p.state() == PeerState::Connected)
            .map(|p| p.peer_id().to_string())
            .collect();
        v.sort();
        v
    }

    /// Every peer with its state, sorted by id.
    pub fn all(&self) -> Vec<(String, PeerState)> {
        let mut v: Vec<(String, PeerState)> = self
            .peers
            .lock()
            .unwrap()
            .values()
            .map(|p| (p.peer_id().to_string(), p.state()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn len(&self) -> usize {
        self.peers.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
