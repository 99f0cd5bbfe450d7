//! The generated JSON mappers beside prost-reflect's proto3-JSON serde, on the messages of
//! scenarios (a) and (c): encode and decode throughput.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost_reflect::{DescriptorPool, DynamicMessage};
use protogate::JsonOptions;
use protogate::{JsonMessage, decode_message, encode_message};
use protogate_bench::pb::__PROTOGATE_REGISTRY as REGISTRY;
use protogate_bench::{DESCRIPTOR_SET, large, small};

fn compare<M: JsonMessage>(c: &mut Criterion, label: &str, message: &M) {
    let pool = DescriptorPool::decode(DESCRIPTOR_SET).expect("descriptors");
    let descriptor = pool
        .get_message_by_name(M::TYPE_NAME)
        .expect("message type");
    let dynamic = DynamicMessage::decode(descriptor.clone(), message.encode_to_vec().as_slice())
        .expect("decodes");
    let mut json = Vec::new();
    encode_message(message, JsonOptions::default(), &REGISTRY, &mut json).expect("encodes");

    let mut group = c.benchmark_group(label);
    group.throughput(Throughput::Bytes(json.len() as u64));
    let mut buf = Vec::with_capacity(json.len());
    group.bench_function("encode/protogate", |b| {
        b.iter(|| {
            buf.clear();
            encode_message(message, JsonOptions::default(), &REGISTRY, &mut buf).expect("encodes");
        })
    });
    group.bench_function("encode/prost-reflect", |b| {
        b.iter(|| {
            buf.clear();
            let mut serializer = serde_json::Serializer::new(&mut buf);
            serde::Serialize::serialize(&dynamic, &mut serializer).expect("serializes");
        })
    });
    group.bench_function("decode/protogate", |b| {
        b.iter(|| decode_message::<M>(&json, JsonOptions::default(), &REGISTRY).expect("decodes"))
    });
    group.bench_function("decode/prost-reflect", |b| {
        b.iter(|| {
            let mut deserializer = serde_json::Deserializer::from_slice(&json);
            DynamicMessage::deserialize(descriptor.clone(), &mut deserializer).expect("decodes")
        })
    });
    group.finish();
}

fn mappers(c: &mut Criterion) {
    compare(c, "(a) small", &small());
    compare(c, "(c) large", &large());
}

criterion_group!(benches, mappers);
criterion_main!(benches);
