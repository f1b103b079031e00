/** The API's shapes the page reads: the daemon's own types (type-only: nothing of the daemon is bundled). */
export type { DomainInfo, HostInfo } from '../../src/model/api.js';
export type { DomainSample, StatsEvent, StatsResponse } from '../../src/model/stats.js';
