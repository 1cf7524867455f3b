DROP TABLE chatstore_messages;
DROP TABLE chatstore_conversations;
