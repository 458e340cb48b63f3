//! Protobuf-encoded records, decoded by message descriptor (prost-reflect) into JSON values
//! whose fields are the message's (proto field names, 64-bit integers as numbers,
//! `google.protobuf.Timestamp` as RFC 3339), which the JSON decoders then map to columns. The
//! descriptor comes from a serialized `FileDescriptorSet`, as `protoc --descriptor_set_out
//! --include_imports` writes it, or is compiled from `.proto` sources (as a schema registry
//! keeps them) by protox. Shared by gRPC ingest's `protobuf` rows and Kafka's `ENCODE
//! PROTOBUF`.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::ConnectorError;

/// Longest serialized descriptor set accepted.
pub const MAX_DESCRIPTOR_SET_BYTES: usize = 4 << 20;

/// A message type to decode records of.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtobufMessage {
    descriptor: MessageDescriptor,
}

impl ProtobufMessage {
    /// The message `name` (full name, e.g. `nexmark.Bid`) of a serialized descriptor set.
    pub fn from_descriptor_set(descriptor_set: &[u8], name: &str) -> Result<Self, ConnectorError> {
        if descriptor_set.len() > MAX_DESCRIPTOR_SET_BYTES {
            return Err(ConnectorError::new(format!("a descriptor set has at most {} MiB", MAX_DESCRIPTOR_SET_BYTES >> 20)));
        }
        let pool = DescriptorPool::decode(descriptor_set)
            .map_err(|e| ConnectorError::new(format!("not a FileDescriptorSet: {e}")).with_hint("protoc --descriptor_set_out=FILE --include_imports ..."))?;
        let descriptor = pool.get_message_by_name(name).ok_or_else(|| {
            let known: Vec<String> = pool.all_messages().map(|m| m.full_name().to_string()).take(20).collect();
            ConnectorError::new(format!("the descriptor set has no message \"{name}\"")).with_hint(format!("its messages: {}", known.join(", ")))
        })?;
        Ok(Self { descriptor })
    }

    pub fn name(&self) -> &str {
        self.descriptor.full_name()
    }

    /// Where the message is declared in its file, as Confluent's wire format names it: the
    /// index among the file's messages, then among each enclosing message's nested ones
    /// (`[0]` for the file's first message).
    pub fn message_indexes(&self) -> Vec<i32> {
        // The descriptor path alternates a field number (4: message_type, 3: nested_type)
        // and an index.
        self.descriptor.path().iter().skip(1).step_by(2).copied().collect()
    }

    /// One record as a JSON object, or why it does not decode.
    pub fn to_json(&self, record: &[u8]) -> Result<serde_json::Value, String> {
        let message = DynamicMessage::decode(self.descriptor.clone(), record).map_err(|e| format!("not a {}: {e}", self.descriptor.full_name()))?;
        let options = SerializeOptions::new().stringify_64_bit_integers(false).use_proto_field_name(true).skip_default_fields(false);
        message.serialize_with_options(serde_json::value::Serializer, &options).map_err(|e| e.to_string())
    }
}

/// Most `.proto` files one compilation takes (a schema and everything it imports).
pub const MAX_PROTO_FILES: usize = 64;

/// Compiles the `.proto` sources `files` (by import name) from `root`, with what it imports,
/// into a serialized descriptor set; the well-known types (`google/protobuf/*.proto`) are
/// built in.
pub fn compile_sources(root: &str, files: std::collections::BTreeMap<String, String>) -> Result<Vec<u8>, ConnectorError> {
    if files.len() > MAX_PROTO_FILES {
        return Err(ConnectorError::new(format!("a Protobuf schema imports at most {MAX_PROTO_FILES} files")));
    }
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(Sources(files));
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(root).map_err(|e| ConnectorError::new(format!("the Protobuf schema does not compile: {e}")))?;
    Ok(compiler.encode_file_descriptor_set())
}

/// `.proto` sources held in memory, by import name.
struct Sources(std::collections::BTreeMap<String, String>);

impl protox::file::FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
        match self.0.get(name) {
            Some(source) => protox::file::File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use prost_types::{field_descriptor_proto::Type, DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet};

    fn bid_set() -> Vec<u8> {
        let field = |name: &str, number: i32, kind: Type| FieldDescriptorProto { name: Some(name.into()), number: Some(number), r#type: Some(kind as i32), ..Default::default() };
        let message = DescriptorProto { name: Some("Bid".into()), field: vec![field("auction", 1, Type::Int64), field("channel", 2, Type::String)], ..Default::default() };
        let file = FileDescriptorProto { name: Some("bid.proto".into()), package: Some("nexmark".into()), message_type: vec![message], syntax: Some("proto3".into()), ..Default::default() };
        FileDescriptorSet { file: vec![file] }.encode_to_vec()
    }

    /// A record decodes to its fields by proto name, 64-bit integers as numbers; a record
    /// that is not the message is an error, not a panic.
    #[test]
    fn records_decode_to_json_objects() {
        let bid = ProtobufMessage::from_descriptor_set(&bid_set(), "nexmark.Bid").unwrap();
        // Field 1 (varint) = 1234567890123, field 2 (bytes) = "web".
        let mut record = vec![0x08];
        prost::encoding::encode_varint(1_234_567_890_123, &mut record);
        record.extend_from_slice(&[0x12, 3, b'w', b'e', b'b']);
        assert_eq!(bid.to_json(&record).unwrap(), serde_json::json!({"auction": 1_234_567_890_123i64, "channel": "web"}));
        assert!(bid.to_json(&[0x12, 50, b'x']).is_err(), "a length past the end");
        assert!(ProtobufMessage::from_descriptor_set(&bid_set(), "nexmark.Ask").is_err());
        assert!(ProtobufMessage::from_descriptor_set(b"junk", "nexmark.Bid").is_err());
    }

    /// Sources that import each other and a well-known type compile to a descriptor set whose
    /// messages decode; a nested message's Confluent indexes follow its declaration.
    #[test]
    fn sources_compile_with_imports_and_well_known_types() {
        let files = [
            ("bid.proto", "syntax = \"proto3\"; package nexmark; import \"money.proto\"; import \"google/protobuf/timestamp.proto\";\nmessage Ask { int64 id = 1; }\nmessage Bid { message Extra { string note = 1; } int64 auction = 1; Money price = 2; google.protobuf.Timestamp date_time = 3; }"),
            ("money.proto", "syntax = \"proto3\"; package nexmark; message Money { int64 cents = 1; }"),
        ];
        let files = files.iter().map(|(n, s)| (n.to_string(), s.to_string())).collect();
        let set = compile_sources("bid.proto", files).unwrap();
        let bid = ProtobufMessage::from_descriptor_set(&set, "nexmark.Bid").unwrap();
        assert_eq!(bid.message_indexes(), vec![1]);
        assert_eq!(ProtobufMessage::from_descriptor_set(&set, "nexmark.Bid.Extra").unwrap().message_indexes(), vec![1, 0]);
        assert_eq!(ProtobufMessage::from_descriptor_set(&set, "nexmark.Ask").unwrap().message_indexes(), vec![0]);
        // auction = 7, price { cents = 250 }, date_time { seconds = 1 }.
        let record = [0x08, 7, 0x12, 3, 0x08, 0xfa, 0x01, 0x1a, 2, 0x08, 1];
        assert_eq!(bid.to_json(&record).unwrap(), serde_json::json!({"auction": 7, "price": {"cents": 250}, "date_time": "1970-01-01T00:00:01Z"}));
        let broken = [("bid.proto".to_string(), "syntax = \"proto3\"; import \"missing.proto\"; message Bid {}".to_string())].into();
        let error = compile_sources("bid.proto", broken).unwrap_err();
        assert!(error.message.contains("missing.proto"), "{}", error.message);
    }
}
