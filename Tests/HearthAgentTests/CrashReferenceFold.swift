import HearthAggregation
@testable import HearthAggregator
import HearthConfig
import HearthCore

/// The model file the aggregator must publish as `version`: the `parent` version's model and
/// optimiser state with `updates` (in arrival order) validated and folded by a fresh
/// `FedBuffAggregator`, configured from the aggregator's own configuration file, then
/// published and encoded as `Aggregator.commit` does. Deterministic in local mode (no central
/// noise), so a restart that rebuilt the running sum wrongly publishes different bytes.
func referencePublication(configurationText: String, parentModel: [UInt8], parentOptimizer: [UInt8]?, parentVersion: UInt64,
                          version: UInt64, updates: [[UInt8]]) throws -> [UInt8] {
    let configuration = try AggregatorConfiguration(toml: configurationText)
    let plan = try Aggregator.plan(configuration, version: parentVersion)
    let parent = try ModelFile.decode(parentModel)
    let optimizer = try parentOptimizer.map(OptimizerStateCoding.decode) ?? OptimizerState()
    var fold = try FedBuffAggregator(parameters: parent.parameters, configuration: Aggregator.fedBuff(configuration),
                                     plan: plan, optimizerState: optimizer)
    for bytes in updates {
        let validated = try UpdateValidator.validate(bytes, plan: plan, currentVersion: parentVersion,
                                                     dimension: parent.parameters.parameterCount)
        try fold.fold(bytes, validated)
    }
    var rng = SystemRandomNumberGenerator()
    let publication = try fold.publish(using: &rng)
    return ModelFile.encode(try Model(version: version, catalog: parent.catalog, parameters: publication.parameters, encoder: parent.encoder))
}
