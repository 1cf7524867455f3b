DROP INDEX messages_system ON messages;
