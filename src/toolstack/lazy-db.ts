/**
 * A SQLite database opened on first use (WAL, a busy timeout, its schema applied): building the API,
 * e.g. for its documentation, touches no file. Shared by the stores that live beside xeno.db's domains.
 */
import Database from 'better-sqlite3';

export class LazyDb {
  private opened?: Database.Database;

  constructor(
    private readonly file: () => string,
    private readonly schema: string,
  ) {}

  get db(): Database.Database {
    if (!this.opened) {
      const db = new Database(this.file());
      db.pragma('journal_mode = WAL');
      db.pragma('busy_timeout = 5000');
      db.exec(this.schema);
      this.opened = db;
    }
    return this.opened;
  }

  close(): void {
    this.opened?.close();
    this.opened = undefined;
  }
}
