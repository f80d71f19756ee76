# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cinepipe_global_optspecs
    string join \n color= h/help V/version
end

function __fish_cinepipe_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cinepipe_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cinepipe_using_subcommand
    set -l cmd (__fish_cinepipe_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cinepipe -n "__fish_cinepipe_needs_command" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_needs_command" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -s V -l version -d 'Print version'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "validate" -d 'Check specs completely (every rule, every profile); folders are searched for `*.toml`'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "plan" -d 'Print the resolved values of a spec (with where each came from) and its stage order'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "graph" -d 'Draw a spec\'s stage graph'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "run" -d 'Run a spec into a new run folder, or finish an interrupted or failed run with `--resume`'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "sweep" -d 'Run a suite of specs repeatedly (each spec under each profile, N times): verdicts per spec and profile, the seeds\' KPIs, gates that decide the exit code, JUnit for CI'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "doctor" -d 'Check that this machine can run a spec: each service reachable, its version, the model, the done-marker node, GPU, queue, output folder and free space, clock skew'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "sentinel" -d 'Write done-markers for workflows without the marker node: follow one ComfyUI and mark each finished prompt\'s frames once they are on disk. Runs until SIGTERM or Ctrl-C'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "bench" -d 'Compare variants of one spec (profiles, or a bench file\'s profile overlays): runs interleaved, `results.json` with intervals and a rank test, `ANALYSIS.md` with plots, and a regression gate against a baseline'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "runs" -d 'List the runs in an output folder: id, start, outcome, sessions, instances, scenes'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "show" -d 'Summarise one run: outcome, stage instances with their attempts, failures, its files'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "report" -d 'Write one self-contained HTML report of a run folder or a sweep folder: outcome, timeline, duration histograms, a contact sheet of every scene\'s frames, the story'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "trace" -d 'Write a run as Chrome/Perfetto trace-event JSON: a track per scene, a span per attempt, instant events for retries, requeues and fallbacks'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "feedback" -d 'Rate a scene of a run (1–5 stars and a comment, into its `artifact-metadata.json`), or summarise the ratings of a folder of runs by genre, prompt template version and model'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "serve" -d 'Serve a local web view of a folder of runs: the runs list with the ratings summary, each run\'s report page with a rating form per scene, the run\'s files'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "verify" -d 'Check a run folder against the telemetry contract: `artifact-metadata.json` against its schema, `run-summary.txt` against the metadata'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "install-node" -d 'Install cinepipe\'s ComfyUI node package (the done-marker writer) into a ComfyUI\'s `custom_nodes/`'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "docs" -d 'Write the spec reference (Markdown) generated from cinepipe\'s types'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "schema" -d 'Write the JSON Schemas generated from cinepipe\'s types'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "completions" -d 'Write the shell completions (bash, zsh, fish) generated from cinepipe\'s flags'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "man" -d 'Write the man pages (`cinepipe.1`, one per command) generated from cinepipe\'s flags'
complete -c cinepipe -n "__fish_cinepipe_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand validate" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand validate" -s q -l quiet -d 'Print only problems, not the specs that pass'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand validate" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand plan" -s p -l profile -d 'Profile to apply (`standard`, `fast`, or one the spec defines)' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand plan" -s f -l format -d 'Output format' -r -f -a "text\t''
json\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand plan" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand plan" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand graph" -s f -l format -d 'Output format' -r -f -a "dot\t''
mermaid\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand graph" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand graph" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -s p -l profile -d 'Profile to apply (`standard`, `fast`, or one the spec defines); with `--resume`, the run\'s own profile by default' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -s j -l jobs -d 'Stage attempts running at the same time, at most [default: the number of CPUs, at least 4]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -l resume -d 'Finish the run in this folder without redoing the stage instances it completed' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -l log-format -d 'How progress and logs are written on stderr: `text` (a live display on a terminal, plain lines otherwise) or `json` (one JSON object per event, as in `events.jsonl`, and per log line)' -r -f -a "text\t''
json\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -l metrics-file -d 'Add this run\'s counts to a Prometheus metrics file (text format, for node_exporter\'s textfile collector); its state is kept beside it (`FILE.state.json`)' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -s k -l keep-going -d 'After a failure, let the work that does not depend on it finish (default: stop scheduling at the first failure and let running stages end)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -l no-cache -d 'Do not reuse cached LLM answers; ask again'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -s q -l quiet -d 'Print no progress (no live display, no lines, no logs), only the result'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand run" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s n -l repeat -d 'Runs of each (spec, profile) [default: the suite\'s `repeat`, else 1]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l stress-duration -d 'Stress: start rounds of every (spec, profile) until this much time has passed (`90s`, `10m`, `2h 30m`), in place of a repeat count; runs under way finish' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s p -l profile -d 'Profile to sweep; repeat the flag for several [default: the suite\'s `profiles`, else `standard`]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l partition -d 'Run only this shard of the work list: `hash:K/N` (by a hash of each run\'s key: a run stays in its shard when specs are added) or `count:K/N` (round-robin); K may be `index-env` to read the 0-based `JOB_COMPLETION_INDEX`' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s j -l jobs -d 'Runs at the same time' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l out -d 'The sweep folder to make [default: `sweeps/<UTC time>-<suite>`]' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l resume -d 'Finish the sweep in this folder: finished runs are kept, interrupted ones resumed, the rest run' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l junit -d 'Also write the sweep as JUnit XML to this file' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s k -l keep-going -d 'In each run, let the work that does not depend on a failure finish'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s q -l quiet -d 'Print only the result'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -a "merge" -d 'Merge the folders of a sweep\'s shards (`--partition`) into one sweep folder, with the `sweep.json` (and JUnit) an unsharded sweep of the same runs has'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and not __fish_seen_subcommand_from merge help" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from merge" -l out -d 'The merged sweep folder to make' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from merge" -l junit -d 'Also write the merged sweep as JUnit XML to this file' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from merge" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from merge" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from help" -f -a "merge" -d 'Merge the folders of a sweep\'s shards (`--partition`) into one sweep folder, with the `sweep.json` (and JUnit) an unsharded sweep of the same runs has'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sweep; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand doctor" -s p -l profile -d 'Profile to apply to the spec' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand doctor" -s f -l format -d 'Output format (`json` follows schemas/doctor.schema.json)' -r -f -a "text\t''
json\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand doctor" -l min-free-gb -d 'Free space under which a folder is a warning, in GB' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand doctor" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l comfyui -d 'The ComfyUI server to follow' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l output-dir -d 'Its output folder (ComfyUI\'s `--output-dir`), where frames and markers are' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l state -d 'The state file (prompts handled) [default: `.cinepipe-sentinel.json` in the output folder]' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l poll-interval -d 'Seconds between passes over `/history` when the WebSocket does not wake it sooner' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l stable-for -d 'Seconds a prompt\'s files must keep their sizes before its marker is written' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l keep -d 'Prompt ids the state remembers (oldest dropped first)' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l metrics-file -d 'Keep Prometheus counters of passes and markers in this file (text format, for node_exporter\'s textfile collector)' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -l once -d 'One pass, then exit (for a timer or cron instead of a service)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand sentinel" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l profiles -d 'The variants: profiles, comma-separated (the first is the reference)' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l compare -d 'A bench file (`bench.toml`): the spec, and variants as profile overlays' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -s n -l runs -d 'Measured runs of each variant [default: the bench file\'s `runs`, else 5]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l warmup -d 'Warm-up runs of each variant, run first and recorded apart [default: the bench file\'s `warmup`, else 1]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l seed -d 'The seed of each round\'s order and of the bootstrap [default: random, recorded]' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l out -d 'The bench folder to make [default: `benches/<UTC time>-<spec>`]' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l resume -d 'Finish the bench in this folder: finished runs are kept, an interrupted one resumed, the rest run' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l baseline -d 'An earlier `results.json`: exit 4 when a variant\'s median wall time regresses past `--max-regression` with its interval above no change' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l max-regression -d 'The largest slowdown against the baseline that passes, in percent (`10%` or `10`)' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l junit -d 'Also write the comparison as JUnit XML to this file (a test case per variant)' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -l no-cache -d 'Ask the LLM again in every run instead of using its cached answer'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -s k -l keep-going -d 'In each run, let the work that does not depend on a failure finish'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -s q -l quiet -d 'Print only the verdict'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand bench" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand runs" -s f -l format -d 'Output format: a table, or one JSON document (`schemas/runs.schema.json`)' -r -f -a "text\t''
json\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand runs" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand runs" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand show" -s f -l format -d 'Output format: text, or one JSON document (`schemas/show.schema.json`)' -r -f -a "text\t''
json\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand show" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand show" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand report" -s o -l out -d 'The HTML file to write [default: `report.html` in the folder]' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand report" -l frames-per-scene -d 'Frames of each scene on the contact sheet, spread from the first to the last; 0 = all' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand report" -l thumb-size -d 'The longer side of a thumbnail, in pixels' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand report" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand report" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand trace" -s o -l out -d 'The JSON file to write [default: `trace.json` in the run folder]' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand trace" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand trace" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -l scene -d 'The scene rated (its id, `scene-1`); without it the rating is of the whole run' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -s r -l rating -d 'Stars, 1 to 5' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -s c -l comment -d 'What the rater says about it' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -l author -d 'Who rates' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -l summary -d 'Print the ratings of every run under this folder, by genre, prompt template version and model, instead of rating' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand feedback" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand serve" -l addr -d 'The address to listen on (port 0: any free port)' -r
complete -c cinepipe -n "__fish_cinepipe_using_subcommand serve" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand serve" -l allow-remote -d 'Allow an address other than loopback (the view has no authentication: anyone who reaches the port reads the runs and can rate them)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand serve" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand verify" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand verify" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand install-node" -l comfyui-dir -d 'The ComfyUI folder (the one that holds `main.py` and `custom_nodes/`)' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand install-node" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand install-node" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand docs" -l out -d 'File to write' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand docs" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand docs" -l check -d 'Write nothing; exit 1 if the file differs from what would be written'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand docs" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand schema" -l out-dir -d 'Folder to write them into' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand schema" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand schema" -l check -d 'Write nothing; exit 1 if the files in the folder differ from what would be written'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand schema" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand completions" -l out-dir -d 'Folder to write them into' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand completions" -l shell -d 'Print the script of this one shell on stdout instead' -r -f -a "bash\t''
zsh\t''
fish\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand completions" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand completions" -l check -d 'Write nothing; exit 1 if the files in the folder differ from what would be written'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand completions" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand man" -l out-dir -d 'Folder to write them into' -r -F
complete -c cinepipe -n "__fish_cinepipe_using_subcommand man" -l color -d 'When to color diagnostics' -r -f -a "auto\t''
always\t''
never\t''"
complete -c cinepipe -n "__fish_cinepipe_using_subcommand man" -l check -d 'Write nothing; exit 1 if the files in the folder differ from what would be written'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand man" -s h -l help -d 'Print help'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "validate" -d 'Check specs completely (every rule, every profile); folders are searched for `*.toml`'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "plan" -d 'Print the resolved values of a spec (with where each came from) and its stage order'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "graph" -d 'Draw a spec\'s stage graph'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "run" -d 'Run a spec into a new run folder, or finish an interrupted or failed run with `--resume`'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "sweep" -d 'Run a suite of specs repeatedly (each spec under each profile, N times): verdicts per spec and profile, the seeds\' KPIs, gates that decide the exit code, JUnit for CI'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "doctor" -d 'Check that this machine can run a spec: each service reachable, its version, the model, the done-marker node, GPU, queue, output folder and free space, clock skew'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "sentinel" -d 'Write done-markers for workflows without the marker node: follow one ComfyUI and mark each finished prompt\'s frames once they are on disk. Runs until SIGTERM or Ctrl-C'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "bench" -d 'Compare variants of one spec (profiles, or a bench file\'s profile overlays): runs interleaved, `results.json` with intervals and a rank test, `ANALYSIS.md` with plots, and a regression gate against a baseline'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "runs" -d 'List the runs in an output folder: id, start, outcome, sessions, instances, scenes'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "show" -d 'Summarise one run: outcome, stage instances with their attempts, failures, its files'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "report" -d 'Write one self-contained HTML report of a run folder or a sweep folder: outcome, timeline, duration histograms, a contact sheet of every scene\'s frames, the story'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "trace" -d 'Write a run as Chrome/Perfetto trace-event JSON: a track per scene, a span per attempt, instant events for retries, requeues and fallbacks'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "feedback" -d 'Rate a scene of a run (1–5 stars and a comment, into its `artifact-metadata.json`), or summarise the ratings of a folder of runs by genre, prompt template version and model'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "serve" -d 'Serve a local web view of a folder of runs: the runs list with the ratings summary, each run\'s report page with a rating form per scene, the run\'s files'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "verify" -d 'Check a run folder against the telemetry contract: `artifact-metadata.json` against its schema, `run-summary.txt` against the metadata'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "install-node" -d 'Install cinepipe\'s ComfyUI node package (the done-marker writer) into a ComfyUI\'s `custom_nodes/`'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "docs" -d 'Write the spec reference (Markdown) generated from cinepipe\'s types'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "schema" -d 'Write the JSON Schemas generated from cinepipe\'s types'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "completions" -d 'Write the shell completions (bash, zsh, fish) generated from cinepipe\'s flags'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "man" -d 'Write the man pages (`cinepipe.1`, one per command) generated from cinepipe\'s flags'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and not __fish_seen_subcommand_from validate plan graph run sweep doctor sentinel bench runs show report trace feedback serve verify install-node docs schema completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cinepipe -n "__fish_cinepipe_using_subcommand help; and __fish_seen_subcommand_from sweep" -f -a "merge" -d 'Merge the folders of a sweep\'s shards (`--partition`) into one sweep folder, with the `sweep.json` (and JUnit) an unsharded sweep of the same runs has'
