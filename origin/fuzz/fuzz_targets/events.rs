//! Fuzz the viewer event parser (what anyone can POST to an edge) and the relayed-record
//! parser (what edges POST to an origin): any bytes parse to valid events or are refused,
//! never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(events) = origin::events::model::parse_posted(data, 200) {
        assert!(!events.is_empty() && events.len() <= origin::events::model::MAX_BATCH);
        for e in &events {
            assert!(origin::events::model::validate(e, 200).is_ok());
        }
    }
    let _ = serde_json::from_slice::<Vec<origin::events::Record>>(data);
});
