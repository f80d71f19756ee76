//! The sweep as JUnit XML (quick-junit), the way cargo-nextest writes it: one `<testsuite>` per
//! (spec, profile), one `<testcase>` per repeat. A run that passed only after a retry is a
//! success with a `<flakyFailure>` per failed attempt; a failed run is a `<failure>` with its
//! failed attempts before the last as `<rerunFailure>`s.

use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Report, SerializeError, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::verdict::{RunSummary, SweepReport};

/// The JUnit document of a sweep whose runs are `runs` (summarised by `report`).
pub fn junit(report: &SweepReport, runs: &[RunSummary]) -> Result<String, SerializeError> {
    let mut doc = Report::new(format!("cinepipe-sweep-{}", report.suite));
    for v in &report.verdicts {
        let mut suite = TestSuite::new(format!("{} [{}]", v.spec, v.profile));
        let mut mine: Vec<&RunSummary> = runs
            .iter()
            .filter(|r| r.spec == v.spec && r.profile == v.profile)
            .collect();
        mine.sort_by_key(|r| r.repeat);
        for r in mine {
            let status = if r.passed() {
                let mut s = TestCaseStatus::success();
                s.add_reruns(r.failures.iter().map(|f| rerun(f)));
                s
            } else {
                let message = r
                    .failures
                    .last()
                    .cloned()
                    .unwrap_or_else(|| format!("the run ended {}", r.outcome));
                let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                s.set_message(message.clone());
                s.set_type(r.outcome.clone());
                s.set_description(r.failures.join("\n"));
                let before_last = r.failures.len().saturating_sub(1);
                s.add_reruns(r.failures[..before_last].iter().map(|f| rerun(f)));
                s
            };
            let mut case = TestCase::new(format!("repeat {}", r.repeat), status);
            case.set_classname(format!("{}.{}", v.spec, v.profile));
            if let Some(secs) = r.seconds {
                case.set_time(Duration::from_secs_f64(secs.max(0.0)));
            }
            case.set_system_out(format!("run folder: {}", r.run_dir));
            suite.add_test_case(case);
        }
        doc.add_test_suite(suite);
    }
    doc.to_string()
}

fn rerun(failure: &str) -> TestRerun {
    let mut r = TestRerun::new(NonSuccessKind::Failure);
    r.set_message(failure.to_owned());
    r
}
