//! Coverage-guided fuzzing of the evaluation: any bytes, with and without an envelope, must
//! give an evaluation (and the trace headers deliver and filter write) without panicking.
//! Run with `fuzz/run.sh SECONDS`.

#![no_main]

use backstop::config::Config;
use backstop::message::EnvVars;
use backstop::rules::RuleSet;
use backstop::verdict::evaluate;
use libfuzzer_sys::fuzz_target;

/// The own infrastructure, so that ownership judging runs too.
const OWN: &str =
    "own:\n  domains: [example.com]\n  hosts: [mail.example.com]\n  networks: [192.0.2.0/24]\n";

thread_local! {
    static SETUP: (Config, RuleSet) = {
        let config = Config::from_str(OWN, "fuzz.yaml").expect("the fuzz config");
        let rules = RuleSet::build(&config.user_rules, "fuzz.yaml").expect("the default rules");
        (config, rules)
    };
}

fuzz_target!(|data: &[u8]| {
    SETUP.with(|(config, rules)| {
        let envelope = EnvVars {
            sender: Some(String::new()),
            recipient: Some(("RECIPIENT".to_string(), "user@example.com".to_string())),
            ..EnvVars::default()
        };
        for env in [EnvVars::default(), envelope] {
            let eval = evaluate(data, config, rules, &env);
            let _ = backstop::trace::trace_headers(data, &eval);
        }
    });
});
