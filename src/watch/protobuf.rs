//! The few protocol-buffer encodings TensorBoard's events need, written by hand: varints,
//! 64-bit and 32-bit fixed fields and length-delimited fields (strings, bytes, nested
//! messages). Fields are written in the order the caller adds them; callers add them in
//! field-number order, as protobuf's own serializers do.

/// A message being encoded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
}

/// Wire types of the protobuf encoding.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoded message.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    fn key(&mut self, field: u32, wire_type: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire_type));
    }

    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.bytes.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.bytes.push(value as u8);
    }

    /// An `int64`, `int32` or enum field (negative numbers take ten bytes, as in protobuf).
    pub fn int(mut self, field: u32, value: i64) -> Self {
        self.key(field, VARINT);
        self.varint(value as u64);
        self
    }

    /// A `double` field.
    pub fn double(mut self, field: u32, value: f64) -> Self {
        self.key(field, FIXED64);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `float` field.
    pub fn float(mut self, field: u32, value: f32) -> Self {
        self.key(field, FIXED32);
        self.bytes.extend_from_slice(&value.to_le_bytes());
        self
    }

    /// A `bytes` or `string` field.
    pub fn bytes(mut self, field: u32, value: &[u8]) -> Self {
        self.key(field, LENGTH_DELIMITED);
        self.varint(value.len() as u64);
        self.bytes.extend_from_slice(value);
        self
    }

    /// A nested message.
    pub fn message(self, field: u32, value: Message) -> Self {
        self.bytes(field, &value.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_fixed_and_nested_fields() {
        // The examples of the protobuf encoding guide: 150 in field 1, "testing" in field 2.
        assert_eq!(Message::new().int(1, 150).into_bytes(), [0x08, 0x96, 0x01]);
        assert_eq!(
            Message::new().bytes(2, b"testing").into_bytes(),
            [0x12, 0x07, b't', b'e', b's', b't', b'i', b'n', b'g']
        );
        let nested = Message::new().message(3, Message::new().int(1, 150));
        assert_eq!(nested.into_bytes(), [0x1a, 0x03, 0x08, 0x96, 0x01]);
        assert_eq!(Message::new().int(1, -1).into_bytes().len(), 11);
        assert_eq!(
            Message::new().double(1, 1.0).into_bytes(),
            [0x09, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]
        );
        assert_eq!(
            Message::new().float(2, 0.75).into_bytes(),
            [0x15, 0, 0, 0x40, 0x3f]
        );
        assert_eq!(
            Message::new().message(2, Message::new()).into_bytes(),
            [0x12, 0x00]
        );
    }
}
