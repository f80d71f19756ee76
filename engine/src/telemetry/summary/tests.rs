//! Tests of run-summary.txt: writing, parsing back, and what a malformed line reports.

use super::*;

#[test]
fn values_read_back_as_written() {
    for v in [
        Value::Null,
        Value::Bool(true),
        Value::from(-1400),
        Value::from(45.25),
        Value::from(600.0),
        Value::from("success"),
        Value::from("NVIDIA GeForce RTX 3090"),
        Value::from("600"),
        Value::from("null"),
        Value::from(""),
        Value::from("\"quoted\" and = signs"),
    ] {
        let text = format!("[Run r] QueueConfig: K={}", value_text(&v));
        let line = parse_line(&text).expect("parses");
        assert_eq!(line.get("K"), Some(&v), "{text}");
    }
}

#[test]
fn ids_and_notes_with_odd_characters_round_trip() {
    let s = Summary {
        lines: vec![
            Line {
                subject: Subject::Scene("scene ]1".to_owned()),
                label: "FallbackNote".to_owned(),
                payload: Payload::Text(" two\nlines ".to_owned()),
            },
            Line {
                subject: Subject::Run("r".to_owned()),
                label: "Outcome".to_owned(),
                payload: Payload::Fields(vec![
                    Field {
                        key: "Outcome".to_owned(),
                        value: Value::from("failed"),
                    },
                    Field {
                        key: "Scenes".to_owned(),
                        value: Value::from(2),
                    },
                ]),
            },
        ],
    };
    let text = s.render();
    assert!(
        text.contains("[Run r] Outcome: failed Scenes=2\n"),
        "{text}"
    );
    assert_eq!(Summary::parse(&text), Ok(s));
}

#[test]
fn malformed_lines_are_errors_with_their_numbers() {
    let text = "# comment\n\n[Scene s] Telemetry: A=1 A=2\nhello\n[Scene s] Telemtry: A=1\n[Run r] Run: Name=\"open\n";
    let errors = Summary::parse(text).expect_err("invalid");
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "line 3: `A` given twice",
            "line 4: expected `[Scene <id>] <Label>: ...` or `[Run <id>] <Label>: ...`",
            "line 5: unknown label `Telemtry` (expected one of Telemetry, FallbackNote)",
            "line 6: unterminated quoted string",
        ]
    );
}
