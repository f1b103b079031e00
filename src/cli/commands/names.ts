/**
 * Every command family's commands (and aliases), in help order, as plain data: what the CLI's
 * entries and its loader read without loading any family. index.ts joins each family to its
 * registration (cli.test.ts checks the names against what each family really registers).
 */
export const FAMILY_COMMANDS = {
  domain: [['create'], ['list', 'li'], ['shutdown'], ['reboot'], ['destroy'], ['pause'], ['unpause'], ['domid'], ['domname'], ['uptime'], ['config']],
  host: [['info'], ['log'], ['dmesg']],
  network: [['network-list'], ['network-attach'], ['network-detach'], ['network-rules']],
  console: [['console']],
  runtime: [['mem-set'], ['mem-max'], ['vcpu-list'], ['vcpu-set'], ['vcpu-pin'], ['sched-credit']],
  block: [['block-list'], ['block-attach'], ['block-detach'], ['cd-insert'], ['cd-eject'], ['image-create'], ['image-info']],
  saveRestore: [['save'], ['restore']],
  migration: [['migrate']],
  snapshot: [['snapshot-create'], ['snapshot-list'], ['snapshot-revert'], ['snapshot-delete']],
  top: [['top']],
  manage: [['new'], ['start'], ['delete'], ['host-stop']],
  web: [['web-token']],
  poolAdmin: [['pool-create'], ['pool-join']],
  pool: [['host-list'], ['host-disable'], ['host-enable'], ['pool-eject']],
  evacuate: [['host-evacuate']],
  images: [['create-image']],
} as const satisfies Record<string, ReadonlyArray<readonly [string, ...string[]]>>;

export type FamilyKey = keyof typeof FAMILY_COMMANDS;

/**
 * The families of the CLI's small bundle (scripts/bundle-cli.mjs): the commands run most, and
 * timed against Node's own start (bench/cli.ts). A command line naming one of their commands loads
 * some 60 KB of code instead of 150 KB, 3-4 ms of every such command.
 */
export const CORE_FAMILIES: readonly FamilyKey[] = ['domain', 'runtime'];

/** Every command's name and aliases, without registering any. */
export const COMMAND_NAMES: ReadonlyArray<{ name: string; aliases: readonly string[] }> = Object.values(FAMILY_COMMANDS).flatMap((cmds) =>
  cmds.map(([name, ...aliases]) => ({ name, aliases })),
);

/** The words (names and aliases) of the core families' commands: the loader's choice. */
export const CORE_WORDS: readonly string[] = CORE_FAMILIES.flatMap((f) => FAMILY_COMMANDS[f].flat());
