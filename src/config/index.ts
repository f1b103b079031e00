/** Config file parsing: xl.cfg / xm domain configs and xend-config.sxp. Pure, except the file loaders. */

export { XlCfgLexer, type Token, type TokenKind } from './xlcfg-lexer.js';
export {
  parseXlCfg,
  getEntry,
  plainValue,
  type XlCfgAst,
  type XlEntry,
  type XlValue,
  type XlString,
  type XlNumber,
  type XlList,
  type XlPos,
} from './xlcfg-parser.js';
export { parseDiskSpec, formatDiskSpec, VDEV_RE, type DiskSpecOptions } from './disk-spec.js';
export { parseVifSpec, formatVifSpec, parseRate, scriptBaseName, VIF_SCRIPTS, DEFAULT_RATE_INTERVAL_US } from './vif-spec.js';
export { parseCpuList, formatCpuList, normaliseCpuList } from './cpu-list.js';
export { parseMemSize, formatMemSize } from './sizes.js';
export {
  toDomainConfig,
  applyOverrides,
  parseDomainConfigFile,
  OVERRIDE_FILE,
  KNOWN_KEYS,
  type Warn,
  type DomainConfigOptions,
  type ParseDomainConfigFileOptions,
} from './domain-config.js';
export { formatXlCfg, quoteXlString } from './xlcfg-format.js';
export { parseSxp, sxpText, type SxpNode, type SxpAtom, type SxpString, type SxpList } from './sxp.js';
export {
  toDaemonConfig,
  parseDaemonConfig,
  loadDaemonConfigFile,
  parseNetworkScript,
  parseCidr,
  NETWORK_SCRIPTS,
} from './daemon-config.js';
export { readConfigFile } from './read-file.js';
export { validateDomainConfig, validateDomainName, validateMachineType, type ValidateOptions } from './validate.js';
export { MAX_VCPUS, MAX_MEMORY_MIB, MAX_DISKS, MAX_VIFS, MAX_CMDLINE, MAX_XLCFG_NESTING, NIC_MODELS } from './validate-fields.js';
