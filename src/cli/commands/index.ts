/** The command table: every command family, one line each. */
import type { Command } from 'commander';
import { registerBlockCommands } from './block.js';
import { registerConsoleCommands } from './console.js';
import { registerDomainCommands } from './domain.js';
import { registerEvacuateCommands } from './evacuate.js';
import { registerHostCommands } from './host.js';
import { registerManageCommands } from './manage.js';
import { registerImageCommands } from './images.js';
import { registerMigrationCommands } from './migration.js';
import { registerNetworkCommands } from './network.js';
import { registerPoolAdminCommands } from './pool-admin.js';
import { registerPoolCommands } from './pool.js';
import { registerRuntimeCommands } from './runtime.js';
import { registerSaveRestoreCommands } from './save-restore.js';
import { registerSnapshotCommands } from './snapshot.js';
import { registerTopCommands } from './top.js';
import { registerWebCommands } from './web.js';

/**
 * Every command family with the commands (and aliases) it registers, in help order. A command line
 * that names one command registers its family only: `xeno list` need not build the other 50
 * commands' options and help (some 5 ms of its start). The names are checked against what each
 * family really registers (cli.test.ts).
 */
export const COMMAND_FAMILIES: ReadonlyArray<{ commands: ReadonlyArray<readonly [string, ...string[]]>; register: (p: Command) => void }> = [
  { register: registerDomainCommands, commands: [['create'], ['list', 'li'], ['shutdown'], ['reboot'], ['destroy'], ['pause'], ['unpause'], ['domid'], ['domname'], ['uptime'], ['config']] },
  { register: registerHostCommands, commands: [['info'], ['log'], ['dmesg']] },
  { register: registerNetworkCommands, commands: [['network-list'], ['network-attach'], ['network-detach'], ['network-rules']] },
  { register: registerConsoleCommands, commands: [['console']] },
  { register: registerRuntimeCommands, commands: [['mem-set'], ['mem-max'], ['vcpu-list'], ['vcpu-set'], ['vcpu-pin'], ['sched-credit']] },
  { register: registerBlockCommands, commands: [['block-list'], ['block-attach'], ['block-detach'], ['cd-insert'], ['cd-eject'], ['image-create'], ['image-info']] },
  { register: registerSaveRestoreCommands, commands: [['save'], ['restore']] },
  { register: registerMigrationCommands, commands: [['migrate']] },
  { register: registerSnapshotCommands, commands: [['snapshot-create'], ['snapshot-list'], ['snapshot-revert'], ['snapshot-delete']] },
  { register: registerTopCommands, commands: [['top']] },
  { register: registerManageCommands, commands: [['new'], ['start'], ['delete'], ['host-stop']] },
  { register: registerWebCommands, commands: [['web-token']] },
  { register: registerPoolAdminCommands, commands: [['pool-create'], ['pool-join']] },
  { register: registerPoolCommands, commands: [['host-list'], ['host-disable'], ['host-enable'], ['pool-eject']] },
  { register: registerEvacuateCommands, commands: [['host-evacuate']] },
  { register: registerImageCommands, commands: [['create-image']] },
];

/** Every command's name and aliases, without registering any. */
export const COMMAND_NAMES: ReadonlyArray<{ name: string; aliases: readonly string[] }> = COMMAND_FAMILIES.flatMap((f) =>
  f.commands.map(([name, ...aliases]) => ({ name, aliases })),
);

/** Register every family, or (given the command a line names) only the family that has it. */
export function registerCommands(program: Command, only?: string): void {
  const family = only === undefined ? undefined : COMMAND_FAMILIES.find((f) => f.commands.some((c) => c.includes(only)));
  for (const f of family ? [family] : COMMAND_FAMILIES) f.register(program);
}
