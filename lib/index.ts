// rebatch: BatchNorm done right for Node.js.
export { ChannelStats } from './stats';
export type { ChannelStatsJSON } from './stats';
export {
  batchNorm, batchNormAsync, batchNormBackward, batchNormBackwardAsync, moments, momentsAsync, updateRunningStats,
} from './functional';
export type {
  BatchNormBackwardOptions, BatchNormGrads, BatchNormOptions, BatchNormResult, MomentsOptions, RunningStatsOptions,
} from './functional';
export type { Layout, TensorLike } from './tensor';
export type { ChannelValues } from './validate';
export { getNumThreads, isa, setIsa, setNumThreads, supportedIsas } from './runtime';
// Layers (issue 3): BN variants, population statistics, state.
export { NormLayer } from './layers/layer';
export type { LayerState, LayerStateInput } from './layers/layer';
export { BatchNorm } from './layers/batch-norm';
export { BatchNormBase } from './layers/batch-norm-base';
export type { BatchNormLayerOptions, Convention, EvalStats } from './layers/batch-norm-base';
export { GhostBatchNorm } from './layers/ghost-batch-norm';
export type { GhostBatchNormOptions } from './layers/ghost-batch-norm';
export { FrozenBatchNorm, freeze, freezeBatchNorms } from './layers/frozen-batch-norm';
export type { FrozenBatchNormOptions } from './layers/frozen-batch-norm';
export { splitIntoGroups } from './layers/segments';
export type { LastGroup, Segment } from './layers/segments';
export { isPopulationTarget } from './layers/collect';
export type { PopulationTarget, RunningStatsView, StatsSink } from './layers/collect';
export { namedLayers, replaceLayers } from './layers/tree';
export type { LayerTree } from './layers/tree';
export { estimatePopulation, PopulationEstimator } from './population';
export type { PopulationEstimatorJSON, PopulationEstimatorKind, PopulationStats } from './population';
export { PopulationCollector, recomputePopulationStats, recomputePopulationStatsSync, statsDrift } from './precise-bn';
export type { LayerPopulation, PopulationReport, RecomputeOptions, StatsDrift } from './precise-bn';
export { decodeSafetensors, encodeSafetensors } from './safetensors';
export type { SafeTensor, SafetensorsData, SafetensorsDtype } from './safetensors';
export { loadSafetensors, loadStateDict, saveSafetensors, stateDict } from './layers/state';
export type { LoadStateOptions, LoadStateResult } from './layers/state';
export { DomainBatchNorm } from './layers/domain-batch-norm';
export { batchNormBackwardElemt, batchNormBackwardReduce } from './backward-halves';
export type { BackwardElemtOptions, BackwardReduceOptions } from './backward-halves';
export { GroupNorm } from './layers/group-norm';
export type { GroupNormOptions } from './layers/group-norm';
export { LayerNorm } from './layers/layer-norm';
export type { LayerNormOptions } from './layers/layer-norm';
export { InstanceNorm } from './layers/instance-norm';
export type { InstanceNormOptions } from './layers/instance-norm';
export { SyncBatchNorm } from './layers/sync-batch-norm';
export { LocalCommunicator, SharedMemoryCommunicator } from './communicator';
export type { Communicator, SharedGroup } from './communicator';
export { ShuffleBatchNorm } from './layers/shuffle-batch-norm';
export type { ShuffleBatchNormOptions } from './layers/shuffle-batch-norm';
export { createRng, inversePermutation, permuteSamples, randomPermutation } from './shuffle';
