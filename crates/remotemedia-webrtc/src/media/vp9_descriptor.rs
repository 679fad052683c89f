//! The VP9 RTP payload descriptor (RFC 9628 §4.2), parsed per packet: where the VP9 data
//! starts, and the bits the assembler needs.
//!
//! Ours rather than rtc 0.21's `Vp9Packet`, which keeps the reference indices (`P_DIFF`) of
//! every packet it parsed in one growing list and refuses a packet once three were seen: with
//! Chromium's flexible mode (every inter frame carries `P_DIFF`), each inter frame after the first
//! few was refused, so only keyframes decoded (issue 13, item 1). It also refused a packet with
//! three references, which the RFC allows.

/// What a packet's descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Vp9Descriptor {
    /// `P`: the frame references another (an inter frame).
    pub inter_picture: bool,
    /// `F`: flexible mode (reference indices in the descriptor).
    pub flexible: bool,
    /// `B`: the packet starts a layer frame.
    pub start_of_frame: bool,
    /// `E`: the packet ends a layer frame.
    pub end_of_frame: bool,
    /// The 7- or 15-bit picture id, if present.
    pub picture_id: Option<u16>,
    /// Spatial layer id (0 without layer indices).
    pub spatial_id: u8,
    /// Temporal layer id (0 without layer indices).
    pub temporal_id: u8,
    /// Reference indices present (flexible mode, inter frame), at most 3.
    pub references: u8,
    /// Offset of the VP9 data in the packet's payload.
    pub header_len: usize,
}

/// Why a descriptor is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vp9DescriptorError {
    /// The payload ends inside the descriptor (or has no VP9 data after it).
    Short,
    /// More than three reference indices (RFC 9628: "up to 3 times").
    TooManyReferences,
}

/// Parses the descriptor at the start of an RTP payload.
pub fn parse(payload: &[u8]) -> Result<Vp9Descriptor, Vp9DescriptorError> {
    let mut r = Reader { b: payload, at: 0 };
    let first = r.byte()?;
    let bit = |n: u8| first & (1 << n) != 0;
    let (i, p, l, f, b, e, v) = (bit(7), bit(6), bit(5), bit(4), bit(3), bit(2), bit(1));
    let mut d = Vp9Descriptor {
        inter_picture: p,
        flexible: f,
        start_of_frame: b,
        end_of_frame: e,
        ..Default::default()
    };
    if i {
        let hi = r.byte()?;
        d.picture_id = Some(if hi & 0x80 != 0 {
            (u16::from(hi & 0x7f) << 8) | u16::from(r.byte()?)
        } else {
            u16::from(hi)
        });
    }
    if l {
        let layers = r.byte()?;
        d.temporal_id = layers >> 5;
        d.spatial_id = (layers >> 1) & 0x07;
        if !f {
            r.byte()?; // TL0PICIDX
        }
    }
    if f && p {
        loop {
            let pdiff = r.byte()?;
            d.references += 1;
            if d.references > 3 {
                return Err(Vp9DescriptorError::TooManyReferences);
            }
            if pdiff & 0x01 == 0 {
                break;
            }
        }
    }
    if v {
        // Scalability structure: N_S|Y|G, then sizes, then the picture group.
        let ss = r.byte()?;
        let layers = usize::from(ss >> 5) + 1;
        if ss & 0x10 != 0 {
            r.skip(layers * 4)?;
        }
        if ss & 0x08 != 0 {
            let groups = r.byte()?;
            for _ in 0..groups {
                let g = r.byte()?;
                r.skip(usize::from((g >> 2) & 0x03))?;
            }
        }
    }
    if r.at >= payload.len() {
        return Err(Vp9DescriptorError::Short);
    }
    d.header_len = r.at;
    Ok(d)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Vp9DescriptorError> {
        let v = *self.b.get(self.at).ok_or(Vp9DescriptorError::Short)?;
        self.at += 1;
        Ok(v)
    }

    fn skip(&mut self, n: usize) -> Result<(), Vp9DescriptorError> {
        if self.b.len() < self.at + n {
            return Err(Vp9DescriptorError::Short);
        }
        self.at += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flexible_mode_inter_frame_as_chromium_sends_it() {
        // I P L F B E V Z = 1 1 1 1 1 1 0 0; 15-bit picture id 0x1234; T=0 U=0 S=0 D=0; one
        // P_DIFF of 1 (N=0); then VP9 data.
        let p = [0xFC, 0x92, 0x34, 0x00, 0x02, 0xAA, 0xBB];
        let d = parse(&p).unwrap();
        assert_eq!(d.picture_id, Some(0x1234));
        assert!(d.inter_picture && d.flexible && d.start_of_frame && d.end_of_frame);
        assert_eq!(d.references, 1);
        assert_eq!(d.header_len, 5);
    }

    #[test]
    fn every_packet_is_parsed_on_its_own_however_many_came_before() {
        let p = [0xFC, 0x92, 0x34, 0x00, 0x03, 0x05, 0x06, 0xAA];
        for _ in 0..100 {
            assert_eq!(parse(&p).unwrap().references, 3);
        }
    }

    #[test]
    fn three_references_are_allowed_and_four_refused() {
        assert_eq!(
            parse(&[0x50, 0x03, 0x03, 0x02, 0xAA]).unwrap().references,
            3
        );
        assert_eq!(
            parse(&[0x50, 0x03, 0x03, 0x03, 0x02, 0xAA]),
            Err(Vp9DescriptorError::TooManyReferences)
        );
    }

    #[test]
    fn a_keyframe_with_a_scalability_structure() {
        // I=1 (7-bit id 5), P=0, L=0, F=1, B=1, E=1, V=1; SS: N_S=0, Y=1, G=1; 640x480; one
        // group: T=0 U=0 R=0.
        let p = [0x9E, 0x05, 0x18, 0x02, 0x80, 0x01, 0xE0, 0x01, 0x00, 0xAA];
        let d = parse(&p).unwrap();
        assert!(!d.inter_picture);
        assert_eq!(d.picture_id, Some(5));
        assert_eq!(d.header_len, 9);
    }

    #[test]
    fn non_flexible_mode_skips_tl0picidx() {
        // I=0 P=1 L=1 F=0 B=1 E=0 V=0: layer byte T=2, then TL0PICIDX.
        let p = [0x68, 0x40, 0x07, 0xAA];
        let d = parse(&p).unwrap();
        assert_eq!((d.temporal_id, d.references, d.header_len), (2, 0, 3));
    }

    #[test]
    fn truncated_descriptors_are_refused() {
        for p in [
            &[][..],
            &[0x80],
            &[0x80, 0x80],
            &[0x50, 0x03],
            &[0x02, 0x10, 0x00],
            &[0x02, 0x08, 0x01, 0x0C],
            &[0xFC, 0x92, 0x34, 0x00, 0x02],
        ] {
            assert_eq!(parse(p), Err(Vp9DescriptorError::Short), "{p:?}");
        }
    }
}
